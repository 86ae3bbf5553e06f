"""Lazy re-exports for the package `__init__`s: a re-exported name imports its module on first use.

Every stage package re-exports its modules' APIs (docs/api.md), so an eager `__init__` makes
`import vad_core.evaluation.formatting` load torch, scikit-learn, matplotlib and PyAV through
`vad_core` and `vad_core.evaluation`. The Dagster code location imports a few light modules at
load time; every process that loads it (the code server, each run worker) paid for the whole
library. A package's `__init__` now lists its re-exports as ordinary imports inside
`if TYPE_CHECKING:` (what mypy and the architecture test read) and ends with

    __getattr__, __dir__ = lazy_exports(__name__, __file__)

which reads that block back (one source of truth, no second table of names) and imports a
name's module when the name is first looked up (PEP 562). scientific-python's `lazy_loader`
does the same from a `.pyi` stub beside each `__init__`; reading the `__init__` itself keeps
one file per package and no extra dependency.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def exported_sources(init_file: str | Path) -> dict[str, str]:
    """`{name: module}` for every `from module import name` in the file's top-level
    `if TYPE_CHECKING:` blocks (absolute imports only)."""
    tree = ast.parse(Path(init_file).read_text(), filename=str(init_file))
    sources: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module:
                    for alias in stmt.names:
                        sources[alias.asname or alias.name] = stmt.module
    return sources


def lazy_exports(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, resolving the names its `__init__`
    (`init_file`) imports under `if TYPE_CHECKING:`; a resolved name is cached on the package."""
    sources = exported_sources(init_file)
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(module, name, value)  # the next look-up is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(sources))

    return __getattr__, __dir__


__all__ = ["exported_sources", "lazy_exports"]
