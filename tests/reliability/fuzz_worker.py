"""The fuzz test's worker: probe each path read from stdin and answer one JSON line per path.

Run as `python -m tests.reliability.fuzz_worker`. A separate process, so that a crash (a
segfault in a decoder) or a hang costs one file, not the test run: the parent restarts the
worker past the file and keeps a per-file timeout. For each path it reports the manifest row's
status, frame count and error, the frames `iter_frames` yields (what feature extraction sees)
and the frames a plain PyAV decode yields (the reference), or the exception that escaped.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path


def examine(path: Path) -> dict[str, object]:
    from tests.reliability.media import reference_frame_count
    from vad_core.errors import VADInputError
    from vad_core.footage import iter_frames, probe_video

    row = probe_video(path)
    out: dict[str, object] = {"status": row["status"], "n_frames": row["n_frames"], "error": row["error"]}
    if row["status"] == "ok":
        try:
            out["decoded"] = sum(1 for _ in iter_frames(path, "file"))
        except VADInputError as exc:
            out["decoded"], out["decode_error"] = None, str(exc)
        out["reference"] = reference_frame_count(path)
    return out


def main() -> int:
    import tests.reliability.media  # noqa: F401 - imports first (vad_core loads torch: seconds), then
    import vad_core.footage  # noqa: F401 - say so: the per-file timeout starts after this line

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        path = Path(line.rstrip("\n"))
        try:
            answer = examine(path)
        except BaseException as exc:  # noqa: BLE001 - what escaped is the finding
            answer = {"status": "raised", "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        print(json.dumps({"path": str(path), **answer}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
