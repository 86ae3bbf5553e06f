"""docs/api.md is the contract: every name it lists under a module imports from that module, the list
is the module's `__all__`, and every module of the two packages with a public API has a section."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "api.md"
SECTION = re.compile(r"^### `((?:vad_core|vad_pipeline)[\w.]*)`\n\n(Exports: .*?\.)\n\n", re.M | re.S)


def documented() -> dict[str, list[str]]:
    """`{module: [exported names]}` from the `### \\`module\\`` sections and their `Exports:` paragraph."""
    out = {}
    for match in SECTION.finditer(DOC.read_text()):
        out[match.group(1)] = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", match.group(2))
    return out


def test_the_doc_has_sections() -> None:
    sections = documented()
    assert len(sections) > 40 and "vad_core" in sections and "vad_core.io.store" in sections
    assert "TableStore" in sections["vad_core.io.store"]


@pytest.mark.parametrize("module", sorted(documented()))
def test_every_documented_name_imports_and_is_exported(module: str) -> None:
    names = documented()[module]
    mod = importlib.import_module(module)
    missing = [n for n in names if not hasattr(mod, n)]
    assert not missing, f"{module}: documented but not importable: {missing}"
    exported = list(getattr(mod, "__all__", []))
    assert sorted(names) == sorted(exported), (
        f"{module}: docs/api.md lists {sorted(set(names) ^ set(exported))} differently from __all__"
    )


def test_every_stage_package_is_documented() -> None:
    packages = ["vad_core"] + [
        f"vad_core.{p.name}" for p in sorted((REPO / "vad_core").iterdir()) if (p / "__init__.py").is_file()
    ]
    missing = [p for p in packages if p not in documented()]
    assert not missing, f"packages without a docs/api.md section: {missing}"
