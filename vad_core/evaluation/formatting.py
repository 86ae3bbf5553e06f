"""Small formatting helpers shared by the reports: finite numbers or None, fixed digits, Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def finite_or_none(x: Any) -> float | None:
    """`float(x)` when it is a finite number, else None (NaN, inf, None, text)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(x: Any, digits: int = 4) -> str:
    """A number with `digits` decimals; `n/a` for missing or non-finite values; text as it is."""
    v = finite_or_none(x)
    if v is None:
        return "n/a" if x is None or isinstance(x, float) else str(x)
    return f"{v:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = ["finite_or_none", "fmt", "markdown_table"]
