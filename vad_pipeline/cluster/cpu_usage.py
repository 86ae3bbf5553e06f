"""Where a machine's CPU went over an interval: per process group and in total (Linux `/proc`).

The cluster benchmark's 2-worker phase is only as fast as the share of the cores its two
extraction steps get. When a reading comes out slow, the question is who else ran: the daemon,
PostgreSQL, the code server, the benchmark itself, or the hypervisor (steal time). This module
answers it without a profiler: `/proc/stat` gives the machine's user/system/idle/steal ticks, and
`/proc/<pid>/stat` each process's CPU, summed by process group (the cluster starts every
component in a group of its own, `vad_pipeline.cluster.lifecycle`).

A group's CPU is the sum over its live processes of their own and their reaped children's CPU
(`utime + stime + cutime + cstime`), so short-lived children (a PostgreSQL backend per connection,
a Celery task process) are counted once their parent in the group has reaped them. A process
that exits *and* whose parent is outside the group loses its ticks: the per-group figures are a
lower bound, and `other` (the machine's busy ticks minus the groups') absorbs the rest.

psutil would do the per-process part too, but it is not a dependency of the product; these are
two files of a documented format (proc(5)).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

__all__ = ["CpuSnapshot", "cpu_between", "snapshot", "wait_until_quiet"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice (proc(5));
# guest time is already inside user, so it is not added again.
_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuSnapshot:
    """The machine's CPU ticks by kind, and each watched process group's CPU ticks, at one instant."""

    machine: Mapping[str, int]
    groups: Mapping[str, int]
    # the per-CPU lines of the same /proc/stat: the CPUs whose ticks the aggregate line sums (online ones),
    # which os.cpu_count() (configured CPUs) overstates on a machine with CPUs offline; 0 = none listed
    n_cpus: int = 0


def _machine_ticks(proc: Path) -> tuple[dict[str, int], int]:
    """The aggregate line's ticks by kind, and how many per-CPU (`cpuN`) lines follow it."""
    lines = (proc / "stat").read_text().splitlines()
    first = lines[0].split()
    if first[0] != "cpu":
        raise ValueError(f"{proc / 'stat'}: first line is not the aggregate 'cpu' line: {first[:3]}")
    n_cpus = sum(1 for line in lines[1:] if line.startswith("cpu") and line[3:4].isdigit())
    return {name: int(value) for name, value in zip(_FIELDS, first[1:], strict=False)}, n_cpus


def _process_ticks(stat_text: str) -> tuple[int, int]:
    """(process group, utime + stime + cutime + cstime) from one `/proc/<pid>/stat` line."""
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    rest = stat_text[stat_text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); field n is rest[n - 3].
    pgrp = int(rest[5 - 3])
    ticks = sum(int(rest[n - 3]) for n in (14, 15, 16, 17))
    return pgrp, ticks


def snapshot(groups: Mapping[str, int], proc: Path | str = "/proc") -> CpuSnapshot:
    """The machine's ticks and the CPU ticks of each named process group (`name -> pgid`) now."""
    proc = Path(proc)
    by_pgid = {pgid: 0 for pgid in groups.values()}
    for entry in proc.iterdir() if groups else ():  # no groups (the quiet wait): the machine line only
        if not entry.name.isdigit():
            continue
        try:
            pgrp, ticks = _process_ticks((entry / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError):  # exited between listing and reading
            continue
        if pgrp in by_pgid:
            by_pgid[pgrp] += ticks
    machine, n_cpus = _machine_ticks(proc)
    return CpuSnapshot(machine, {name: by_pgid[pgid] for name, pgid in groups.items()}, n_cpus)


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, object]:
    """CPU seconds spent between two snapshots: per group, the rest (`other`), idle and steal.

    `cores_busy` is the mean number of busy cores (2 on a 2-core machine = both busy throughout), out of
    the CPUs /proc/stat lists (`os.cpu_count()` where it lists none);
    `other_s` = busy seconds not in any watched group (this process, the kernel, anything else
    on the machine); `steal_s` = time the hypervisor gave this machine's cores to someone else."""
    delta = {k: after.machine[k] - before.machine[k] for k in _FIELDS}
    total = sum(delta.values())
    busy = total - delta["idle"] - delta["iowait"] - delta["steal"]
    n_cpus = after.n_cpus or os.cpu_count() or 1
    groups = {name: max(0, after.groups.get(name, 0) - ticks) / _TICK for name, ticks in before.groups.items()}
    return {
        "groups_s": {name: round(s, 2) for name, s in sorted(groups.items(), key=lambda kv: -kv[1])},
        "other_s": round(max(0.0, busy / _TICK - sum(groups.values())), 2),
        "busy_s": round(busy / _TICK, 2),
        "idle_s": round((delta["idle"] + delta["iowait"]) / _TICK, 2),
        "steal_s": round(delta["steal"] / _TICK, 2),
        "cores_busy": round(busy / total * n_cpus, 3) if total else None,
    }


def wait_until_quiet(
    max_busy_cores: float = 0.25, window_s: float = 5.0, timeout_s: float = 120.0, proc: Path | str = "/proc"
) -> dict[str, float | bool]:
    """Block until the machine's busy cores over one `window_s` window fall to `max_busy_cores`.

    A benchmark phase that starts while the previous one's stragglers (a daemon tick, PostgreSQL's
    checkpoint, a worker's imports) still run measures them too. Gives up after `timeout_s` and
    says so in the result rather than failing: the reading is still recorded, with how busy the
    machine was when it began (`busy_cores`), and `quiet` False."""
    start = time.monotonic()
    while True:
        before = snapshot({}, proc)
        time.sleep(window_s)
        busy = cast("float | None", cpu_between(before, snapshot({}, proc))["cores_busy"])
        waited = time.monotonic() - start
        quiet = busy is not None and float(busy) <= max_busy_cores
        if quiet or waited >= timeout_s:
            return {"waited_s": round(waited, 1), "busy_cores": float(busy or 0.0), "quiet": quiet}
