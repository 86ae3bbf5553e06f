"""FeatureScaler: formulas at hand-computed points, round trips, state dicts, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from vad_core.diffusion.preprocessing import FeatureScaler
from vad_core.errors import VADInputError


def _rows() -> np.ndarray:
    # dim 0: mean 2, deviations +-1; dim 1: mean 0, deviations +-3 (population variances 1 and 9)
    return np.array([[1.0, -3.0], [3.0, 3.0], [1.0, 3.0], [3.0, -3.0]], dtype=np.float32)


def test_global_mode_centres_per_dim_and_uses_one_overall_scale() -> None:
    x = _rows()
    sc = FeatureScaler("global").fit(x)
    np.testing.assert_allclose(sc.mean, [2.0, 0.0])
    # overall std after centring = sqrt((1 + 9) / 2) = sqrt(5), the same for both dims
    np.testing.assert_allclose(sc.scale, [np.sqrt(5.0)] * 2, rtol=1e-6)
    z = sc.transform(x)
    np.testing.assert_allclose(z[0], [-1 / np.sqrt(5), -3 / np.sqrt(5)], rtol=1e-6)
    assert abs(float(np.sqrt(np.mean(z.astype(np.float64) ** 2))) - 1.0) < 1e-6
    assert z.dtype == np.float32


def test_per_dim_mode_standardizes_each_dimension_and_floors_constant_ones() -> None:
    x = np.concatenate([_rows(), np.full((4, 1), 7.0, np.float32)], axis=1)  # dim 2 constant
    sc = FeatureScaler("per_dim", floor=1e-3).fit(x)
    s_global = np.sqrt((1 + 9 + 0) / 3)
    np.testing.assert_allclose(sc.scale, [1.0, 3.0, 1e-3 * s_global], rtol=1e-6)
    z = sc.transform(x)
    np.testing.assert_allclose(z.std(axis=0)[:2], [1.0, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(z[:, 2], 0.0)


def test_none_mode_is_identity() -> None:
    x = _rows()
    sc = FeatureScaler("none").fit(x)
    np.testing.assert_array_equal(sc.transform(x), x)


@pytest.mark.parametrize("mode", ["global", "per_dim", "none"])
def test_inverse_and_state_dict_round_trip(mode: str, tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(50, 6)) * [1, 2, 3, 4, 5, 6] + 10).astype(np.float32)
    sc = FeatureScaler(mode).fit(x)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(x)), x, rtol=1e-5, atol=1e-5)
    # through torch.save / weights_only load, as in a checkpoint
    buf = io.BytesIO()
    torch.save(sc.state_dict(), buf)
    buf.seek(0)
    back = FeatureScaler.from_state_dict(torch.load(buf, weights_only=True))
    assert back.mode == mode
    np.testing.assert_array_equal(back.transform(x), sc.transform(x))
    # tensors are handled too, and agree with the numpy path
    t = back.transform(torch.from_numpy(x))
    np.testing.assert_allclose(t.numpy(), sc.transform(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.inverse_transform(t).numpy(), x, rtol=1e-5, atol=1e-5)


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(VADInputError, match="mode"):
        FeatureScaler("zscore")
    with pytest.raises(VADInputError, match="not fitted"):
        FeatureScaler().transform(_rows())
    with pytest.raises(VADInputError, match="non-finite"):
        FeatureScaler().fit(np.array([[1.0, np.nan], [2.0, 3.0]], np.float32))
    with pytest.raises(VADInputError, match="empty"):
        FeatureScaler().fit(np.zeros((0, 3), np.float32))
    with pytest.raises(VADInputError, match="identical"):
        FeatureScaler().fit(np.ones((5, 3), np.float32))
    sc = FeatureScaler().fit(_rows())
    with pytest.raises(VADInputError, match=r"expected shape \(rows, 2\).*\(3, 5\)"):
        sc.transform(np.zeros((3, 5), np.float32))
    with pytest.raises(VADInputError, match="scaler state"):
        FeatureScaler.from_state_dict({"mode": "global"})
