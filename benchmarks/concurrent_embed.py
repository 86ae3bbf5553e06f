"""Does a clip cost more CPU when two 1-thread I3D processes share the machine? Prints JSON.

The cluster benchmark's 2-worker phases spent a little more extraction CPU per partition than its
1-worker phases, and the ratio of two sequential phases also moves with the host's speed. This
separates the two: the same `I3DBackbone.embed` of one Ped2-sized clip (16 x 240 x 360, native
resolution, `resize=False`, 1 torch thread) in

    one          a single process
    two_free     two processes at once, placed by the kernel
    two_pinned   two processes at once, each pinned to its own core (`os.sched_setaffinity`)

each process timing `--passes` embeds after a warm-up, all processes starting together (a barrier).
The phases repeat `--rounds` times in the same run, so a drift of the machine weighs on all three;
the JSON gives each process's CPU and wall seconds per clip and `two_*_over_one` = the mean CPU per
clip together over the mean alone (1.0: sharing costs nothing). Random weights are not used: the
Kinetics-400 weights load from the backbone cache as in the pipeline.

    python benchmarks/concurrent_embed.py [--passes 12] [--rounds 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _output import emit_json  # noqa: E402

PHASES: dict[str, list[int | None]] = {"one": [None], "two_free": [None, None], "two_pinned": [0, 1]}


def _embed_loop(cpu: int | None, passes: int, results: Any, start: Any) -> None:
    import torch

    from vad_core.features.backbones.i3d import load_i3d

    torch.set_num_threads(1)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    backbone = load_i3d(device="cpu", compile=False, batch_size=1)
    clip = torch.randint(0, 256, (1, 16, 240, 360, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    backbone.embed(clip, resize=False)  # warm-up: oneDNN's kernels and the allocator
    start.wait()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(passes):
        backbone.embed(clip, resize=False)
    results.put(
        {"cpu": cpu, "cpu_s": (time.process_time() - cpu0) / passes, "wall_s": (time.perf_counter() - wall0) / passes}
    )


def run_phase(cpus: list[int | None], passes: int) -> list[dict[str, Any]]:
    """One process per entry of `cpus` (a core to pin to, or None), started together; their figures."""
    results: Any = mp.Queue()
    start = mp.Barrier(len(cpus))
    procs = [mp.Process(target=_embed_loop, args=(cpu, passes, results, start)) for cpu in cpus]
    for p in procs:
        p.start()
    out = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise SystemExit(f"an embed process exited with {p.exitcode}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=12, help="timed embeds per process")
    parser.add_argument("--rounds", type=int, default=2, help="repeats of the three phases")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores")
    mp.set_start_method("spawn")
    phases: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in PHASES}
    for r in range(args.rounds):
        for name, cpus in PHASES.items():
            phases[name].append(run_phase(cpus, args.passes))
            print(f"round {r + 1} {name}: {phases[name][-1]}", file=sys.stderr, flush=True)

    def mean_cpu(name: str) -> float:
        values = [p["cpu_s"] for rnd in phases[name] for p in rnd]
        return sum(values) / len(values)

    result = {
        "benchmark": "I3D embed CPU per clip, one process vs two at once",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "clip": [1, 16, 240, 360, 3],
        "passes": args.passes,
        "rounds": args.rounds,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "phases": phases,
        "mean_cpu_s_per_clip": {name: round(mean_cpu(name), 4) for name in PHASES},
        "two_free_over_one": round(mean_cpu("two_free") / mean_cpu("one"), 3),
        "two_pinned_over_one": round(mean_cpu("two_pinned") / mean_cpu("one"), 3),
    }
    emit_json(result, args.out)


if __name__ == "__main__":
    main()
