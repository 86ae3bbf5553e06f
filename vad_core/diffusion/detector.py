"""The deployed detector: every member denoiser (fold / seed models), its scoring config and provenance.

`Detector` is what the `denoiser` asset stores and what scoring (batch and live) loads:

- `score_new(features (N, D), tiles, row_keys) -> (N,)`: rows of new footage, the mean of every
  member's score (the learned counterpart of averaging fold models of a cross-validated fit).
- `score_fitted(features, videos, tiles, row_keys) -> (N,)`: the rows it was fitted on; each row
  is scored by the members that never trained on its video (out-of-fold), and by every member
  when all of them trained on it (a K = 1 ensemble, in-sample).

A detector checkpoint (`DETECTOR_FORMAT`) is one `torch.save` of plain dicts, lists, tensors,
numbers and strings (each member a `denoiser_payload`), read with `torch.load(weights_only=True)`.
`load_detector` also reads a single-denoiser checkpoint (`CHECKPOINT_FORMAT`) as a one-member
detector, so checkpoints written before detectors existed keep scoring.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vad_core.diffusion.denoiser import (
    CHECKPOINT_FORMAT,
    TrainedDenoiser,
    denoiser_from_payload,
    denoiser_payload,
    read_payload,
)
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
from vad_core.errors import VADInputError, check_features

DETECTOR_FORMAT = "vad_core.detector/1"
LEGACY_SCORE = ScoreConfig(score_type="denoising", sigma=8.0, n_draws=16)  # the pipeline's scoring before detectors


@dataclass
class DetectorMember:
    """One deployed denoiser and what it was trained on."""

    denoiser: TrainedDenoiser
    fold: int  # its held-out fold; -1 = trained on every fold
    seed: int  # its training seed
    trained_videos: frozenset[str]  # videos with rows in its training set
    memorization_auc: float | None = None  # the diagnostic at the detector's scoring config

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "seed": self.seed,
            "trained_videos": sorted(self.trained_videos),
            "memorization_auc": self.memorization_auc,
        }


@dataclass
class Detector:
    """Member denoisers + the scoring config (sigma chosen label-free at fit) + provenance."""

    members: list[DetectorMember]
    score_config: ScoreConfig
    recipe: dict[str, Any] = field(default_factory=dict)  # name and fields of the recipe that fitted it
    fitted_videos: tuple[str, ...] = ()
    trim_share: float = 0.0  # share of fitted rows dropped before the deployed members were trained
    sigma_choice: dict[str, float] = field(default_factory=dict)  # neighbour counts per candidate sigma
    score_stats: dict[str, float] = field(default_factory=dict)  # statistics of score_fitted on the fitted rows
    fit_seconds: dict[str, float] = field(default_factory=dict)
    screen: list[DetectorMember] = field(default_factory=list)  # the out-of-fold screen's fold models (not scoring)
    source: str | None = None  # where it was loaded from, for messages

    def __post_init__(self) -> None:
        if not self.members:
            raise VADInputError("Detector: needs at least one member denoiser")
        dims = {m.denoiser.dim for m in self.members}
        tiles = {m.denoiser.n_tiles for m in self.members}
        if len(dims) != 1 or len(tiles) != 1:
            raise VADInputError(f"Detector: members disagree on feature dim {dims} or tile count {tiles}")

    @property
    def dim(self) -> int:
        return self.members[0].denoiser.dim

    @property
    def n_tiles(self) -> int:
        return self.members[0].denoiser.n_tiles

    @property
    def n_models(self) -> int:
        return len(self.members)

    @property
    def device(self) -> torch.device:
        return self.members[0].denoiser.device

    @property
    def fingerprint(self) -> str:
        """Data fingerprint of the first member's training rows (every member shares the fitted rows)."""
        return self.members[0].denoiser.fingerprint

    @property
    def memorization_auc(self) -> float | None:
        """Mean memorization diagnostic over the members, at the scoring config (None if none measured)."""
        values = [m.memorization_auc for m in self.members if m.memorization_auc is not None]
        return float(np.mean(values)) if values else None

    def to(self, device: str | torch.device) -> Detector:
        for m in self.members:
            m.denoiser.to(device)
        return self

    def _mean_of(
        self, x: np.ndarray, use: np.ndarray, tiles: np.ndarray | None, keys: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean over members m of their scores of the rows where `use[m]` `(M, N)`; -> (scores, counts)."""
        total, count = np.zeros(x.shape[0]), np.zeros(x.shape[0], dtype=np.int64)
        for m, member in enumerate(self.members):
            rows = np.flatnonzero(use[m])
            if rows.size == 0:
                continue
            t = None if tiles is None else tiles[rows]
            total[rows] += score_rows(member.denoiser, x[rows], self.score_config, tiles=t, row_keys=keys[rows])
            count[rows] += 1
        return total / np.maximum(count, 1), count

    def _inputs(
        self, features: np.ndarray, tiles: np.ndarray | None, row_keys: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        x = check_features(features, dim=self.dim)
        n = x.shape[0]
        t = None if tiles is None else np.asarray(tiles, dtype=np.int64)
        if t is not None and t.shape != (n,):
            raise VADInputError(f"tiles: expected shape ({n},), got {t.shape}")
        if t is None and self.n_tiles > 0:
            raise VADInputError(f"tiles: required, the detector's denoisers have a {self.n_tiles}-tile embedding")
        keys = np.arange(n, dtype=np.int64) if row_keys is None else np.asarray(row_keys, dtype=np.int64)
        if keys.shape != (n,):
            raise VADInputError(f"row_keys: expected shape ({n},), got {keys.shape}")
        return x, t, keys

    def score_new(
        self, features: np.ndarray, tiles: np.ndarray | None = None, row_keys: np.ndarray | None = None
    ) -> np.ndarray:
        """Scores `(N,)` float64 of rows `(N, D)` of new footage: the mean of every member's score."""
        x, t, keys = self._inputs(features, tiles, row_keys)
        scores, _ = self._mean_of(x, np.ones((self.n_models, x.shape[0]), dtype=bool), t, keys)
        return scores

    def score_fitted(
        self,
        features: np.ndarray,
        videos: np.ndarray,
        tiles: np.ndarray | None = None,
        row_keys: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores `(N,)` of rows of known videos `(N,)`, and how many members `(N,)` never saw each row's video.

        A row is scored by the members that never trained on its video; when every member did
        (K = 1), by all of them, in-sample, and its count is 0. Rows of videos no member saw are
        new footage (every member, count = n_models).
        """
        x, t, keys = self._inputs(features, tiles, row_keys)
        v = np.asarray(videos).astype(str)
        if v.shape != (x.shape[0],):
            raise VADInputError(f"videos: expected shape ({x.shape[0]},), got {v.shape}")
        unseen = np.stack([~np.isin(v, sorted(m.trained_videos)) for m in self.members])
        n_unseen = unseen.sum(axis=0)
        use = np.where(n_unseen[None, :] > 0, unseen, True)
        scores, _ = self._mean_of(x, use, t, keys)
        return scores, n_unseen.astype(np.int64)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: recipe, members, scoring config, diagnostics, timings."""
        return {
            "format": DETECTOR_FORMAT,
            "recipe": dict(self.recipe),
            "n_models": self.n_models,
            "members": [m.to_dict() for m in self.members],
            "screen_members": [m.to_dict() for m in self.screen],
            "score_config": self.score_config.to_dict(),
            "dim": self.dim,
            "n_tiles": self.n_tiles,
            "fitted_videos": list(self.fitted_videos),
            "trim_share": self.trim_share,
            "sigma_choice": dict(self.sigma_choice),
            "memorization_auc_scoring": self.memorization_auc,
            "score_stats": dict(self.score_stats),
            "fit_seconds": dict(self.fit_seconds),
            "fingerprint": self.fingerprint,
        }


def _member_payload(m: DetectorMember) -> dict[str, Any]:
    return {
        "denoiser": denoiser_payload(m.denoiser),
        "fold": int(m.fold),
        "seed": int(m.seed),
        "trained_videos": sorted(m.trained_videos),
        "memorization_auc": m.memorization_auc,
    }


def _member(m: dict[str, Any], where: str, device: str | None) -> DetectorMember:
    return DetectorMember(
        denoiser_from_payload(m["denoiser"], where, device),
        fold=int(m["fold"]),
        seed=int(m["seed"]),
        trained_videos=frozenset(str(v) for v in m["trained_videos"]),
        memorization_auc=None if m.get("memorization_auc") is None else float(m["memorization_auc"]),
    )


def detector_bytes(detector: Detector) -> bytes:
    """The detector checkpoint: every member's `denoiser_payload` plus the detector's own fields."""
    payload = {
        "format": DETECTOR_FORMAT,
        "members": [_member_payload(m) for m in detector.members],
        "screen_members": [_member_payload(m) for m in detector.screen],
        "score_config": detector.score_config.to_dict(),
        "recipe": dict(detector.recipe),
        "fitted_videos": list(detector.fitted_videos),
        "trim_share": float(detector.trim_share),
        "sigma_choice": {k: float(v) for k, v in detector.sigma_choice.items()},
        "score_stats": {k: float(v) for k, v in detector.score_stats.items()},
        "fit_seconds": {k: float(v) for k, v in detector.fit_seconds.items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def load_detector(
    source: str | os.PathLike[str] | bytes, device: str | None = None, name: str | None = None
) -> Detector:
    """A detector from a checkpoint file or bytes (`torch.load(weights_only=True)`) onto `device`.

    A single-denoiser checkpoint (`CHECKPOINT_FORMAT`) becomes a one-member detector scored as
    the pipeline scored it before detectors (`LEGACY_SCORE`). `name` says where bytes came from.
    """
    payload, where = read_payload(source, name)
    if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
        d = denoiser_from_payload(payload, where, device)
        member = DetectorMember(d, fold=-1, seed=d.train_config.seed, trained_videos=frozenset())
        return Detector([member], LEGACY_SCORE, recipe={"name": "legacy"}, source=where)
    if not isinstance(payload, dict) or payload.get("format") != DETECTOR_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise VADInputError(
            f"checkpoint {where}: format {found!r} is neither {DETECTOR_FORMAT!r} nor {CHECKPOINT_FORMAT!r}"
        )
    try:
        members = [_member(m, f"{where} member {i}", device) for i, m in enumerate(payload["members"])]
        screen = [_member(m, f"{where} screen {i}", device) for i, m in enumerate(payload.get("screen_members") or [])]
        detector = Detector(
            members,
            ScoreConfig(**payload["score_config"]),
            recipe=dict(payload.get("recipe") or {}),
            fitted_videos=tuple(str(v) for v in payload.get("fitted_videos") or ()),
            trim_share=float(payload.get("trim_share") or 0.0),
            sigma_choice={str(k): float(v) for k, v in (payload.get("sigma_choice") or {}).items()},
            score_stats={str(k): float(v) for k, v in (payload.get("score_stats") or {}).items()},
            fit_seconds={str(k): float(v) for k, v in (payload.get("fit_seconds") or {}).items()},
            screen=screen,
            source=where,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VADInputError(f"checkpoint {where}: incomplete detector ({type(exc).__name__}: {exc})") from None
    return detector


__all__ = ["DETECTOR_FORMAT", "LEGACY_SCORE", "Detector", "DetectorMember", "detector_bytes", "load_detector"]
