"""`summarize` and `protocol_a` on hand-written records: seeds counted once, choice on one half only."""

from __future__ import annotations

import math
import warnings

import pytest

from vad_core.study.protocol import protocol_a, records_frame, summarize


def _rec(recipe: str, seed: int, group: str, auc: float, scenario: str = "ped2") -> dict:
    return {"scenario": scenario, "recipe": recipe, "seed": seed, "group": group, "auc": auc}


# recipe "a": 01-03 = 90, 92, 94 (mean 92); 04-06 = 80, 81, 82 (mean 81); demo 70, 71, 72
# recipe "b": 01-03 = 91 x3 (mean 91); 04-06 = 85, 86, 87 (mean 86); demo 60 x3
# "baseline knn" beats both on both halves but is never a candidate; "c" has one seed only.
RECORDS = (
    [_rec("a", s, "01-03", 90 + 2 * s) for s in range(3)]
    + [_rec("a", s, "04-06", 80 + s) for s in range(3)]
    + [_rec("a", s, "test", 70 + s, scenario="demo") for s in range(3)]
    + [_rec("b", s, "01-03", 91.0) for s in range(3)]
    + [_rec("b", s, "04-06", 85 + s) for s in range(3)]
    + [_rec("b", s, "test", 60.0, scenario="demo") for s in range(3)]
    + [_rec("baseline knn", 0, "01-03", 99.0), _rec("baseline knn", 0, "04-06", 99.0)]
    + [_rec("c", 0, "01-03", 100.0), _rec("c", 0, "04-06", 100.0)]
)


def _cell(summary, recipe: str, group: str, scenario: str = "ped2"):
    row = summary[(summary["recipe"] == recipe) & (summary["group"] == group) & (summary["scenario"] == scenario)]
    assert len(row) == 1
    return row.iloc[0]


def test_summary_is_mean_min_max_and_seed_count() -> None:
    s = summarize(records_frame(RECORDS))
    a = _cell(s, "a", "01-03")
    assert (a["mean"], a["min"], a["max"], a["seeds"]) == (92.0, 90.0, 94.0, 3)
    assert _cell(s, "b", "04-06")["mean"] == 86.0


def test_a_record_present_in_two_files_counts_as_one_seed() -> None:
    # the same run read from two record files (e.g. `--render` of two studies that both re-ran "a")
    once = summarize(records_frame(RECORDS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # identical re-measurements are not worth a warning
        twice = summarize(records_frame(RECORDS + RECORDS[:3]))
    a = _cell(twice, "a", "01-03")
    assert a["seeds"] == 3 and a["mean"] == _cell(once, "a", "01-03")["mean"]


def test_a_re_measurement_that_disagrees_warns_and_the_last_counts() -> None:
    changed = RECORDS + [_rec("a", 0, "01-03", 96.0)]  # seed 0 re-run: 96 instead of 90
    with pytest.warns(UserWarning, match=r"recipe=a, seed=0, group=01-03 .* \[90\.0, 96\.0\]"):
        s = summarize(records_frame(changed))
    a = _cell(s, "a", "01-03")
    assert (a["seeds"], a["mean"], a["min"]) == (3, 94.0, 92.0)  # (96 + 92 + 94) / 3


def test_protocol_a_chooses_on_one_half_and_reports_the_other() -> None:
    pa = protocol_a(summarize(records_frame(RECORDS))).set_index("chosen_on")
    # on 01-03 "a" (92) beats "b" (91): reported on 04-06 as a's 81, demo 71
    assert pa.loc["01-03", "chosen"] == "a" and pa.loc["01-03", "auc"] == 81.0
    assert (pa.loc["01-03", "auc_min"], pa.loc["01-03", "auc_max"], pa.loc["01-03", "demo"]) == (80.0, 82.0, 71.0)
    # on 04-06 "b" (86) beats "a" (81): reported on 01-03 as b's 91; the baseline and the 1-seed "c" never chosen
    assert pa.loc["04-06", "chosen"] == "b" and pa.loc["04-06", "auc"] == 91.0 and pa.loc["04-06", "demo"] == 60.0


def test_protocol_a_without_a_demo_reports_nan_there() -> None:
    no_demo = [r for r in RECORDS if r["scenario"] == "ped2"]
    pa = protocol_a(summarize(records_frame(no_demo)))
    assert all(math.isnan(v) for v in pa["demo"])
