"""The promotion gates, on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from vad_core.errors import VADInputError
from vad_core.live.promotion import PromotionGates, decide_promotion, promotion_markdown


def _gate(decision, name):
    return next(g for g in decision.gates if g.name == name)


def test_every_gate_passes_on_a_sound_challenger() -> None:
    d = decide_promotion([1.0, 2.0, 3.0], memorization_auc=0.6, frame_auc=0.80004, champion_auc=0.8)
    assert d.promote and [g.name for g in d.gates] == ["finite_scores", "memorization", "score_spread", "frame_auc"]
    assert _gate(d, "score_spread").value == pytest.approx(np.sqrt(2 / 3))  # population std of 1, 2, 3
    assert "0.8000 is not below the champion's 0.8000" in _gate(d, "frame_auc").reason  # compared at 4 digits
    assert len(d.reasons()) == 4  # nothing failed: every gate's reason


@pytest.mark.parametrize(
    ("kwargs", "failed"),
    [
        ({"scores": [1.0, np.nan, 3.0]}, ["finite_scores"]),
        ({"scores": []}, ["finite_scores", "score_spread"]),
        ({"scores": [2.0, 2.0, 2.0]}, ["score_spread"]),
        ({"memorization_auc": 0.95}, ["memorization"]),
        ({"frame_auc": 0.7, "champion_auc": 0.71}, ["frame_auc"]),
    ],
)
def test_a_failing_gate_blocks_and_is_the_only_reason(kwargs, failed) -> None:
    args = {"scores": [1.0, 2.0], "memorization_auc": 0.6, "frame_auc": 0.8, "champion_auc": 0.8} | kwargs
    d = decide_promotion(**args)
    assert not d.promote and [g.name for g in d.failed()] == failed
    assert [r.split(":")[0] for r in d.reasons()] == failed


def test_gates_that_do_not_apply_pass_and_say_so() -> None:
    d = decide_promotion([1.0, 2.0], memorization_auc=None, frame_auc=None, champion_auc=0.9)
    assert d.promote
    assert _gate(d, "memorization").reason.startswith("not measured")
    assert _gate(d, "frame_auc").reason == "no labelled frames: not applicable"
    d = decide_promotion([1.0, 2.0], 0.5, frame_auc=0.6, champion_auc=None)
    assert d.promote and "no champion AUC" in _gate(d, "frame_auc").reason
    tolerant = decide_promotion([1.0, 2.0], 0.5, 0.7, 0.75, PromotionGates(auc_tolerance=0.05))
    assert tolerant.promote


def test_bounds_are_checked_and_the_section_lists_every_gate() -> None:
    with pytest.raises(VADInputError, match="max_memorization_auc"):
        PromotionGates(max_memorization_auc=float("nan"))
    d = decide_promotion([1.0, 2.0], 0.95, 0.8, 0.9)
    md = promotion_markdown(
        {"outcome": "rejected", "challenger": "3", "champion_before": "2", "champion_after": "2",
         "model_name": "m", "decision": d.to_dict()}
    )  # fmt: skip
    assert "Challenger m version 3: **not promoted; the champion is unchanged**" in md
    assert "| memorization | FAIL | 0.95 |" in md and "| finite_scores | pass | 0 |" in md
