"""Checkpoints: weights_only, atomic, bytes or file, bit-exact scores after loading, bad files named."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from tests.core._synthetic import TINY, trained
from vad_core.diffusion.denoiser import checkpoint_bytes, load_checkpoint, save_checkpoint
from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
from vad_core.errors import VADInputError


def test_checkpoint_round_trip_reproduces_scores_bit_for_bit(tmp_path) -> None:
    data, res = trained("tiny")
    path = save_checkpoint(res, tmp_path / "ckpt" / "denoiser.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["denoiser.pt"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["train_config"] == TINY.to_dict() and raw["fingerprint"] == res.fingerprint
    assert raw["history"] == res.history and raw["sigma_data"] == res.sigma_data
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.train_config == TINY and loaded.model_config == res.model_config
    assert not loaded.model.training
    for cfg in (ScoreConfig(n_draws=2), ScoreConfig(score_type="reconstruction", start_step=7, n_draws=2)):
        before = score_rows(res.denoiser, data.features, cfg)
        after = score_rows(loaded, data.features, cfg)
        np.testing.assert_array_equal(after, before)
    # a TrainedDenoiser saves too, and loads back the same
    again = load_checkpoint(save_checkpoint(loaded, tmp_path / "again.pt"))
    np.testing.assert_array_equal(score_rows(again, data.features[:50]), score_rows(loaded, data.features[:50]))


def test_checkpoint_for_another_dimension_is_refused_naming_both_dims(tmp_path) -> None:
    data, res = trained("tiny")
    loaded = load_checkpoint(save_checkpoint(res, tmp_path / "d32.pt"))
    wrong = np.zeros((5, 48), np.float32)
    with pytest.raises(VADInputError, match=r"48 dimensions.*d32\.pt.*32-dimensional.*expects 32"):
        score_rows(loaded, wrong)


def test_bad_checkpoints_are_named(tmp_path) -> None:
    with pytest.raises(VADInputError, match="file not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(VADInputError, match="junk.pt: not a readable"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(VADInputError, match="format"):
        load_checkpoint(other)


def test_checkpoint_bytes_load_without_a_file_and_equal_the_saved_file(tmp_path) -> None:
    data, res = trained("tiny")
    blob = checkpoint_bytes(res)
    assert blob == save_checkpoint(res, tmp_path / "d.pt").read_bytes()
    raw = torch.load(io.BytesIO(blob), weights_only=True)
    assert raw["best_epoch"] == res.best_epoch and raw["model_state_dict"] is not None
    loaded = load_checkpoint(blob, name="demo/denoiser/denoiser.pt")
    assert loaded.source == "demo/denoiser/denoiser.pt"
    np.testing.assert_array_equal(
        score_rows(loaded, data.features[:40], ScoreConfig(n_draws=2)),
        score_rows(res.denoiser, data.features[:40], ScoreConfig(n_draws=2)),
    )
    # a TrainedDenoiser keeps no raw weights and no best epoch
    raw2 = torch.load(io.BytesIO(checkpoint_bytes(loaded)), weights_only=True)
    assert raw2["model_state_dict"] is None and raw2["best_epoch"] is None
    with pytest.raises(VADInputError, match="demo/x.pt: not a readable"):
        load_checkpoint(b"junk", name="demo/x.pt")
