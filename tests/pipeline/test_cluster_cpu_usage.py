"""The benchmark's CPU accounting against the kernel's own per-child accounting (`os.wait4`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vad_pipeline.cluster.cpu_usage import _process_ticks, cpu_between, snapshot, wait_until_quiet

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc only")

# A parent that burns CPU itself and in a child it reaps, so the group's total must include
# reaped children (cutime/cstime): the pattern of PostgreSQL's postmaster and its backends.
BURN = """
import os, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
pid = os.fork()
if pid == 0:
    burn(0.4)
    os._exit(0)
burn(0.3)
os.waitpid(pid, 0)
"""


def test_a_process_groups_cpu_equals_what_the_kernel_charged_it_children_included() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read(); exec(sys.argv[1])", BURN],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    groups = {"burner": child.pid, "nobody": 2**22 + 12345}  # a new session: pgid == pid
    before = snapshot(groups)
    assert child.stdin is not None
    child.stdin.close()  # start burning
    # Snapshot while it is still alive (a zombie still has its /proc entry), then reap it.
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the burner did not finish in 30 s"
        time.sleep(0.01)
    after = snapshot(groups)
    _, _, usage = os.wait4(child.pid, 0)
    charged = usage.ru_utime + usage.ru_stime  # the kernel's figure for the process and its reaped child

    used = cpu_between(before, after)
    assert used["groups_s"]["burner"] == pytest.approx(charged, abs=0.03)
    assert used["groups_s"]["burner"] >= 0.65  # 0.3 s own + 0.4 s child, minus tick rounding
    assert used["groups_s"]["nobody"] == 0
    # The burner ran inside the interval, so the machine was at least that busy.
    assert used["busy_s"] + 0.05 >= used["groups_s"]["burner"]
    assert used["other_s"] == pytest.approx(used["busy_s"] - sum(used["groups_s"].values()), abs=0.02)


def test_the_command_name_may_hold_spaces_and_parentheses() -> None:
    # proc(5): field 2 is "(comm)"; a worker renamed by setproctitle can read "(celery (worker) 1)".
    line = "4242 (celery (worker) 1) S 1 777 777 0 -1 4194560 10 0 0 0 150 25 7 3 20 0 1 0 99 0 0"
    assert _process_ticks(line) == (777, 150 + 25 + 7 + 3)


def test_machine_ticks_come_from_the_aggregate_line(tmp_path: Path) -> None:
    def write(user: int, idle: int, steal: int) -> None:
        (tmp_path / "stat").write_text(f"cpu  {user} 0 10 {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")

    write(1000, 5000, 0)
    before = snapshot({}, tmp_path)
    write(1300, 5600, 100)  # 300 user + 0 system ticks busy, 600 idle, 100 stolen
    used = cpu_between(before, snapshot({}, tmp_path))
    tick = os.sysconf("SC_CLK_TCK")
    assert used["busy_s"] == pytest.approx(300 / tick)
    assert used["idle_s"] == pytest.approx(600 / tick)
    assert used["steal_s"] == pytest.approx(100 / tick)
    # busy share of all ticks x the CPUs the file lists (one cpu0 line), whatever this machine's os.cpu_count()
    assert used["cores_busy"] == pytest.approx(300 / 1000 * 1)


def test_busy_cores_count_the_cpus_proc_stat_lists_not_the_configured_ones(tmp_path: Path) -> None:
    # three per-CPU lines (e.g. 3 of 4 configured CPUs online): 1200 busy of 4000 ticks = 0.9 of 3 cores
    cpus = "".join(f"cpu{i} 0 0 0 0 0 0 0 0 0 0\n" for i in (0, 1, 3))
    (tmp_path / "stat").write_text(f"cpu  100 0 0 900 0 0 0 0 0 0\n{cpus}intr 0\n")
    before = snapshot({}, tmp_path)
    (tmp_path / "stat").write_text(f"cpu  1300 0 0 3700 0 0 0 0 0 0\n{cpus}intr 0\n")
    after = snapshot({}, tmp_path)
    assert after.n_cpus == 3
    assert cpu_between(before, after)["cores_busy"] == pytest.approx(1200 / 4000 * 3)


def test_waiting_for_quiet_gives_up_after_its_timeout_and_says_so(tmp_path: Path) -> None:
    # A fake /proc/stat that never changes has no ticks at all: never "quiet", the wait gives up.
    (tmp_path / "stat").write_text("cpu  1 0 0 1 0 0 0 0 0 0\n")
    result = wait_until_quiet(window_s=0.05, timeout_s=0.2, proc=tmp_path)
    assert result["quiet"] is False
    assert 0.2 <= float(result["waited_s"]) < 2
