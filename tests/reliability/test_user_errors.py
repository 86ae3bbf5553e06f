"""User errors end in one line: a Dagster `Failure` with a one-line description and the detail as
metadata, and `vad demo` printing that line and exiting non-zero (never a traceback)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import Failure

from vad_core.errors import VADInputError
from vad_pipeline.assets.failures import as_failure, user_errors
from vad_pipeline.cli import main

TINY = """\
name: {name}
footage_root: footage
layout: files
generator: synthetic
generator_options: {{n_train: 1, n_test: 1, n_frames: 32, width: 64, height: 64}}
annotations: {{path: labels.csv, format: csv}}
"""


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("VAD_HOME", "VAD_DATASET", "DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VAD_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(os, "environ", os.environ)  # `vad demo` sets variables: monkeypatch restores them
    return tmp_path


def test_user_errors_become_one_line_failures() -> None:
    @user_errors
    def body(x: int) -> int:
        raise VADInputError(f"spec {x}: bad thing\nhow to fix it: do this")

    with pytest.raises(Failure) as info:
        body(3)
    assert info.value.description == "spec 3: bad thing"
    assert info.value.metadata["error"].value == "spec 3: bad thing\nhow to fix it: do this"
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback
    assert as_failure(VADInputError("")).description == "VADInputError"


def test_a_spec_typo_stops_vad_demo_before_any_work(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = home / "typo.yaml"
    spec.write_text(TINY.format(name="typo").replace("layout:", "layuot:"))
    assert main(["demo", "--dataset", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vad demo: error: ") and "\n" not in err
    assert "unknown key 'layuot' (did you mean 'layout'?" in err
    assert not (home / "footage").exists()  # nothing generated, nothing run


def test_a_run_config_typo_stops_vad_demo_before_any_run(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = home / "rc.yaml"
    spec.write_text(TINY.format(name="rc") + "run_config: {denoiser: {epochz: 3}}\n")
    assert main(["demo", "--dataset", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "run_config.denoiser: unknown key 'epochz' (did you mean 'epochs'?" in err and "\n" not in err
    assert not (home / "home" / "rc").exists()  # no table written: no run started


def test_a_failed_run_is_one_line_and_a_non_zero_exit(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = home / "gt.yaml"
    spec.write_text(TINY.format(name="gt"))
    (home / "labels.csv").write_text("video_id,start_frame,end_frame\ntest/01,3,9\ntest/1,0,4\n")  # a typo'd id
    assert main(["demo", "--dataset", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vad demo: error: footage_job failed at ground_truth: ") and "\n" not in err
    assert "1 annotated video ids are not in the manifest: 'test/1' (nearest video: 'test/01')" in err
    assert "annotations.unknown_ids: ignore" in err
    assert "Traceback" not in err
