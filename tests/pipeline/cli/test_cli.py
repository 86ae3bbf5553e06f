"""The `vad` command: subcommands, `vad report` from the stored tables alone, one-line user errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from vad_pipeline.cli import build_parser, main
from vad_pipeline.resources.storage import DatasetKeys


def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == {"demo", "ui", "report", "score", "score-stream"}
    args = parser.parse_args(["report", "--dataset", "x", "--top-clips", "0"])
    assert args.command == "report" and args.top_clips == 0 and callable(args.run)


def test_report_rebuilds_the_pipelines_report_from_the_tables(tiny_pipeline, capsys) -> None:
    p = tiny_pipeline
    store, keys = p.storage.store(), DatasetKeys("tiny")
    before = store.read_json(keys.report_json)
    store.delete(keys.report_md)
    store.delete(keys.report_plot("roc.png"))
    code = main(
        [
            "report",
            "--dataset",
            str(p.spec.spec_path),
            "--home",
            str(p.storage.root()),
            "--smoothing-sigma",
            "4",
            "--top-clips",
            "2",
            "--max-curve-videos",
            "2",
        ]
    )
    assert code == 0
    after = store.read_json(keys.report_json)
    # the same figures as the evaluation asset computed, without a Dagster run
    for name, r in before["scorers"].items():
        assert after["scorers"][name]["metrics"]["roc_auc"] == r["metrics"]["roc_auc"]
    assert after["plots"] == before["plots"] and after["top_clips"] == before["top_clips"]
    assert store.exists(keys.report_md) and store.exists(keys.report_plot("roc.png"))
    out = capsys.readouterr().out
    assert "report rebuilt" in out and f"ROC AUC {before['scorers']['diffusion']['metrics']['roc_auc']:.4f}" in out


def test_user_errors_print_one_line_and_exit_2(tmp_path, capsys) -> None:
    assert main(["report", "--dataset", "no_such_dataset", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vad report: error: dataset 'no_such_dataset'") and "\n" not in err
    spec = tmp_path / "empty.yaml"
    spec.write_text("name: empty\nfootage_root: footage\n")
    assert main(["report", "--dataset", str(spec), "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "frame_scores table" in err and "materialize frame_scores first" in err and "\n" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["demo", "--dataset", str(spec), "--config", str(bad)]) == 2
    assert "--config" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = shutil.which("vad", path=str(__import__("pathlib").Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the vad console script is not installed in this environment (pip install -e .)")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "demo" in out.stdout and "report" in out.stdout


def test_makefile_targets_run_vad_subcommands() -> None:
    """`make demo`, `make demo-ped2`, `make ui` and `make report` go through the `vad` command."""
    import re
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[3] / "Makefile").read_text()
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for target in ("demo", "demo-ped2", "ui", "report"):
        recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe, f"no {target} target"
        called = re.findall(r"\$\(BIN\)/vad (\w[\w-]*)", recipe.group(1))
        assert called and called[0] in commands, f"make {target} does not run a vad subcommand: {recipe.group(1)!r}"
    assert "python -m vad_pipeline" not in makefile
