"""Seeded random damage to small valid videos, one per container: nothing crashes, nothing hangs,
and nothing is shortened without a word.

For each container (mp4, mkv, webm, avi, ts) one valid 24-frame video is mutated `N_PER_CONTAINER`
times (seeded): truncated at a random offset, 1-8 random bit flips, or a splice (a chunk copied
over another place, deleted or inserted). Every mutant is probed in a worker process with a
per-file timeout. Each outcome must be one of:

- a clean error row: status `error`, a message naming the file;
- an ok row whose frame count equals what `iter_frames` (feature extraction) decodes and what a
  plain PyAV decode (the reference) yields, and is not below the original's count.

A transport stream cut exactly at a packet boundary between two frames is a valid, shorter
stream (TS carries no length or index): those are counted apart, as clean cuts, not as silent
shortening. The counts are written to `$VAD_RELIABILITY_COUNTS` (JSON) when it is set.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.media import CONTAINERS, reference_frame_count, write_video

# More mutants or another seed for an exploratory run: VAD_FUZZ_N=1000 VAD_FUZZ_SEED=x pytest ...
N_PER_CONTAINER = int(os.environ.get("VAD_FUZZ_N", "60"))
SEED = os.environ.get("VAD_FUZZ_SEED", "vad-fuzz")
N_FRAMES = 24
TIMEOUT_S = 20.0  # per file, generous for a loaded 2-core machine: a probe of one takes ~20 ms
STARTUP_S = 300.0  # the worker's imports (torch, via vad_core), before any file is timed
REPO = Path(__file__).resolve().parents[2]


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.choice(["truncate", "flip", "splice"])
    b = bytearray(data)
    if kind == "truncate":
        return f"truncate@{(k := rng.randrange(1, len(b)))}", bytes(b[:k])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return "flip", bytes(b)
    n = rng.randint(1, max(1, len(b) // 20))
    src, dst = rng.randrange(len(b) - n), rng.randrange(len(b) - n)
    op = rng.choice(["overwrite", "delete", "insert"])
    if op == "overwrite":
        b[dst : dst + n] = data[src : src + n]
    elif op == "delete":
        del b[src : src + n]
    else:
        b[dst:dst] = data[src : src + n]
    return f"splice-{op}", bytes(b)


class Worker:
    """The worker process, restarted after a crash or a hang."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.fuzz_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        if self._read_line(STARTUP_S) != '{"ready": true}\n':
            self.stop()
            raise RuntimeError("the fuzz worker did not start")

    def _read_line(self, timeout: float) -> str | None:
        """The worker's next line, "" when it died, None when it said nothing for `timeout` seconds."""
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=timeout)
        sel.close()
        return self.proc.stdout.readline() if ready else None

    def ask(self, path: Path) -> dict | str:
        """The worker's answer, or "hang" / "crash"."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(f"{path}\n")
            self.proc.stdin.flush()
        except BrokenPipeError:  # it died before reading this path
            self.stop()
            return "crash"
        line = self._read_line(TIMEOUT_S)
        if line is None:
            self.stop()
            return "hang"
        if not line:
            self.stop()
            return "crash"
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def classify(answer: dict | str, path: Path, kind: str, original: int, ext: str) -> str:
    if isinstance(answer, str):
        return answer  # hang, crash
    if answer["status"] == "raised":
        return "crash"
    if answer["status"] == "error":
        return "clean error" if str(path) in str(answer["error"]) else "unclean error"
    n = answer["n_frames"]
    if n != answer.get("decoded") or n != answer.get("reference"):
        return "inconsistent"
    if n < original:
        if ext == ".ts" and kind.startswith("truncate@") and int(kind.split("@")[1]) % 188 == 0:
            return "clean cut"
        return "silently shortened"
    return "ok"


def test_seeded_fuzz_never_crashes_hangs_or_shortens_silently(tmp_path: Path) -> None:
    worker = Worker()
    counts: dict[str, Counter] = {}
    bad: list[str] = []
    try:
        for ext in CONTAINERS:
            source = write_video(tmp_path / f"source{ext}", n=N_FRAMES)
            assert reference_frame_count(source) == N_FRAMES
            data = source.read_bytes()
            rng = random.Random(f"{SEED}{ext}")  # seeded: the same mutants on every run
            tally = counts.setdefault(ext, Counter())
            for i in range(N_PER_CONTAINER):
                kind, mutant = mutate(data, rng)
                path = tmp_path / f"m{i:03d}{ext}"
                path.write_bytes(mutant)
                outcome = classify(worker.ask(path), path, kind, N_FRAMES, ext)
                tally[outcome] += 1
                if outcome not in ("clean error", "ok", "clean cut"):
                    bad.append(f"{path.name} ({kind}): {outcome}")
                path.unlink()
    finally:
        worker.stop()
    summary = {ext: dict(c) for ext, c in counts.items()}
    total = Counter()
    for c in counts.values():
        total.update(c)
    summary["total"] = dict(total)
    if os.environ.get("VAD_RELIABILITY_COUNTS"):
        target = Path(os.environ["VAD_RELIABILITY_COUNTS"])
        existing = json.loads(target.read_text()) if target.is_file() else {}
        target.write_text(json.dumps({**existing, "fuzz": summary}, indent=1, sort_keys=True))
    print(f"fuzz outcomes: {json.dumps(summary, sort_keys=True)}")
    assert sum(total.values()) == N_PER_CONTAINER * len(CONTAINERS)
    assert not bad, f"{len(bad)} bad outcomes: {bad}"
    assert total["clean error"] > 0 and total["ok"] > 0  # the mutations both break and spare videos


@pytest.mark.parametrize("outcome", ["hang", "crash"])
def test_the_harness_sees_hangs_and_crashes(tmp_path: Path, outcome: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that never answers is a hang, one that dies is a crash: the harness cannot miss them."""
    worker = Worker()
    monkeypatch.setattr(sys.modules[__name__], "TIMEOUT_S", 2.0)
    then = "import time; time.sleep(60)" if outcome == "hang" else "import os; os._exit(1)"
    script = f"import sys; sys.stdin.readline(); {then}"  # takes the path, then hangs or dies
    worker.proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.ask(tmp_path / "x.mp4") == outcome
    finally:
        worker.stop()
