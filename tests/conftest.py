"""Shared fixtures: the read-only ../shared folder beside the checkout, temp homes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VAD_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED} (set VAD_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def ped2_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "ucsd_ped2"


@pytest.fixture(scope="session")
def i3d_reference_path(shared_dir: Path) -> Path:
    return shared_dir / "reference" / "i3d" / "i3d_reference.npz"


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: its networks are tiny, and a second thread only adds
    synchronisation on a shared 2-core machine. Restores the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
