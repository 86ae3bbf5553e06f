"""Whether a newly trained detector (the challenger) may replace the deployed one (the champion).

    gates = PromotionGates()                                     # the documented bounds below
    decision = decide_promotion(row_scores, memorization_auc, frame_auc, champion_auc, gates)
    decision.promote, decision.reasons(), decision.to_dict()
    promotion_markdown(record)                                   # the report's "Promotion" section

Label-free gates, every one must pass:
- `finite_scores`: at least one row score, all of them finite (a NaN or inf score means a broken model
  or broken features; nothing downstream can rank it).
- `memorization`: the memorization diagnostic at the scoring sigma (ROC AUC of held-back against
  fitted rows; 0.5 = none, 1 = the training rows score as perfectly normal) at most
  `max_memorization_auc`, 0.9 by default: the default recipe measures 0.63 (Ped2) / 0.65 (demo) and a
  variant chosen on Ped2 0.79 (docs/results.md), so 0.9 refuses only a detector that has clearly
  memorized its rows. A detector that held no rows back has no diagnostic: the gate passes, saying so.
- `score_spread`: the standard deviation of the row scores above `min_score_std` (0: constant
  scores rank nothing).
Where labels exist (`frame_auc` is a number), `frame_auc`: the challenger's frame ROC AUC at least the
champion's minus `auc_tolerance` (0); it passes, saying why, when there is no champion or the
champion has no AUC, and does not apply without labels. Both AUCs are compared at the four
significant digits the version tags record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vad_core.errors import VADInputError


@dataclass(frozen=True)
class PromotionGates:
    """The bounds of the promotion gates (see the module doc)."""

    max_memorization_auc: float = 0.9
    min_score_std: float = 0.0  # the row scores' std must be strictly above this
    auc_tolerance: float = 0.0  # the challenger's AUC may be this much below the champion's

    def __post_init__(self) -> None:
        for name in ("max_memorization_auc", "min_score_std", "auc_tolerance"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise VADInputError(f"promotion gates: {name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    """One gate: its name, whether it passed, the value it judged (None: none) and why, in words."""

    name: str
    passed: bool
    value: float | None
    reason: str


@dataclass(frozen=True)
class PromotionDecision:
    """Every gate's result; `promote` when all passed."""

    gates: tuple[GateResult, ...]

    @property
    def promote(self) -> bool:
        return all(g.passed for g in self.gates)

    def failed(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def reasons(self) -> list[str]:
        """The failed gates' reasons when any failed, else every gate's."""
        return [f"{g.name}: {g.reason}" for g in (self.failed() or list(self.gates))]

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "gates": [asdict(g) for g in self.gates], "reasons": self.reasons()}


def _four(value: float) -> float:
    return float(f"{value:.4g}")


def _finite(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def decide_promotion(
    scores: object,
    memorization_auc: float | None,
    frame_auc: float | None,
    champion_auc: float | None,
    gates: PromotionGates | None = None,
) -> PromotionDecision:
    """The gates of the module doc on the challenger's row scores `(N,)`, its memorization diagnostic,
    its frame AUC (None: no labels) and the champion's (None: no champion, or it has no AUC)."""
    gates = gates or PromotionGates()
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    bad = int((~np.isfinite(s)).sum())
    results = [
        GateResult("finite_scores", False, float(bad), f"{bad} of {s.size} row scores are not finite")
        if bad or s.size == 0
        else GateResult("finite_scores", True, 0.0, f"all {s.size} row scores are finite")
    ]
    mem = _finite(memorization_auc)
    bound = gates.max_memorization_auc
    if mem is None:
        results.append(GateResult("memorization", True, None, "not measured (the detector held no rows back)"))
    else:
        verdict = "at most" if mem <= bound else "above"
        results.append(GateResult("memorization", mem <= bound, mem, f"AUC {mem:.3f} is {verdict} the bound {bound}"))
    finite = s[np.isfinite(s)]
    std = float(finite.std()) if finite.size else 0.0
    ok = std > gates.min_score_std
    results.append(
        GateResult("score_spread", ok, std, f"row score std {std:.4g} {'>' if ok else '<='} {gates.min_score_std:g}")
    )
    results.append(_auc_gate(_finite(frame_auc), _finite(champion_auc), gates.auc_tolerance))
    return PromotionDecision(tuple(results))


def _auc_gate(auc: float | None, champion: float | None, tolerance: float) -> GateResult:
    if auc is None:
        return GateResult("frame_auc", True, None, "no labelled frames: not applicable")
    if champion is None:
        return GateResult("frame_auc", True, _four(auc), f"{_four(auc):.4f}; no champion AUC to compare with")
    ok = _four(auc) >= _four(champion) - tolerance
    relation = "not below" if ok else "below"
    return GateResult(
        "frame_auc", ok, _four(auc), f"{_four(auc):.4f} is {relation} the champion's {_four(champion):.4f}"
    )


def promotion_markdown(record: Mapping[str, Any]) -> str:
    """The report's "Promotion" section from a promotion record (`outcome`, `challenger`, `champion_before`,
    `champion_after`, `model_name`, `decision`: `PromotionDecision.to_dict()`)."""
    decision = record.get("decision") or {}
    outcome = {
        "promoted": "promoted to champion",
        "rejected": "not promoted; the champion is unchanged",
        "already_champion": "already the champion",
    }.get(str(record.get("outcome")), str(record.get("outcome")))
    before = record.get("champion_before") or "none"
    lines = [
        "## Promotion",
        "",
        f"Challenger {record.get('model_name')} version {record.get('challenger')}: **{outcome}** "
        f"(champion before: {before}; now: {record.get('champion_after') or 'none'}).",
        "",
        "| gate | result | value | why |",
        "|---|---|---|---|",
    ]
    for g in decision.get("gates") or []:
        value = "-" if g.get("value") is None else f"{float(g['value']):.4g}"
        lines.append(f"| {g['name']} | {'pass' if g['passed'] else 'FAIL'} | {value} | {g['reason']} |")
    return "\n".join(lines) + "\n"


__all__ = ["GateResult", "PromotionDecision", "PromotionGates", "decide_promotion", "promotion_markdown"]
