"""What every benchmark does with its result: the JSON on stdout, and the same text in `--out` if given.

A helper module, not a benchmark (`make bench` runs `benchmarks/[!_]*.py`); the benchmarks import it as a
sibling (`python benchmarks/x.py` puts this folder first on `sys.path`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def emit_json(result: dict[str, Any], out: str | Path | None, indent: int = 1) -> str:
    """Print `result` as indented JSON and, when `out` is given, write the same text there; returns it."""
    text = json.dumps(result, indent=indent)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return text
