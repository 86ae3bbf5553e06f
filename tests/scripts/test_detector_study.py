"""The helpers of scripts/detector_study.py (issue 9's protocol runs): the heavy-contamination proxy."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tests.core.study.test_bootstrap import _study
from tests.scripts._scripts import load_script


@pytest.fixture(scope="module")
def study_script():
    return load_script("detector_study")


def test_the_heavy_proxy_fits_training_01_08_and_test_01_06(study_script) -> None:
    heavy = study_script.HEAVY_VIDEOS
    assert len(heavy) == 14
    assert sorted(v for v in heavy if v.startswith("testing/")) == [f"testing/frames/{i:02d}" for i in range(1, 7)]
    assert sorted(v for v in heavy if v.startswith("training/")) == [f"training/frames/{i:02d}" for i in range(1, 9)]


def test_load_ped2_heavy_keeps_only_the_proxy_videos_rows(study_script, monkeypatch) -> None:
    data, _ = _study()
    ped2_names = ["training/frames/01", "training/frames/09", "testing/frames/02"]
    names = dict(zip(sorted(data.n_frames), ped2_names, strict=True))
    rows = data.rows.assign(video_id=data.rows["video_id"].map(names))
    ped2 = replace(
        data, name="ped2", rows=rows, n_frames={names[v]: n for v, n in data.n_frames.items()},
        evaluated=tuple(names[v] for v in data.evaluated),
    )  # fmt: skip
    monkeypatch.setattr(study_script, "load_ped2", lambda folder, gt: ped2)
    heavy = study_script.load_ped2_heavy("unused", "unused")
    assert heavy.name == "ped2_heavy"
    assert set(heavy.rows["video_id"]) == {"training/frames/01", "testing/frames/02"}
    assert set(heavy.n_frames) == {"training/frames/01", "testing/frames/02"}
    assert set(heavy.evaluated) == {"training/frames/01", "testing/frames/02"}
    kept = (rows["video_id"] != "training/frames/09").to_numpy()
    np.testing.assert_array_equal(heavy.features, ped2.features[kept])  # features stay aligned with their rows
    assert len(heavy.rows) == kept.sum() < len(rows)


def test_the_rendered_table_gains_the_heavy_columns_when_its_records_exist(study_script, tmp_path) -> None:
    base = {"recipe": "robust", "seed": 0, "memorization_auc": 0.6, "trim_share": 0.3, "sigma": 8.0, "n_models": 5}
    base |= {"fit_s": 1.0, "score_s": 1.0, "source": "test"}
    records = [{**base, "scenario": "ped2", "group": g, "auc": 90.0} for g in ("01-03", "04-06", "01-06")]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert "ped2_heavy" not in study_script.render([str(path)])
    heavy = [{**base, "scenario": "ped2_heavy", "group": g, "auc": a} for g, a in (("01-03", 87.25), ("04-06", 99.0))]
    path.write_text("".join(json.dumps(r) + "\n" for r in records + heavy))
    table = study_script.render([str(path)])
    assert "| ped2_heavy 01-03 | ped2_heavy 04-06 |" in table and "| 87.2 (1 seed) | 99.0 (1 seed) |" in table
