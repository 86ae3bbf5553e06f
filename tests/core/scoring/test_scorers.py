"""Baseline scorers: AUC bars on synthetic features, kNN/PCA against numpy, per-tile fitting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from vad_core.errors import VADInputError
from vad_core.scoring.scorers import (
    SCORERS,
    AnomalyScorer,
    GCLAutoencoderScorer,
    GCLConfig,
    GCLScorer,
    IsolationForestScorer,
    KNNScorer,
    PCAScorer,
    make_scorer,
)
from vad_core.scoring.scorers.gcl import batch_pseudo_labels


def planted_features(
    seed: int = 0,
    n: int = 1000,
    dim: int = 64,
    latent: int = 8,
    frac: float = 0.03,
    offset: float = 3.0,
    noise: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mixture on an 8-d subspace of R^64 (4 clusters, unit spread, noise 0.1 per dim),
    with 3% of rows pushed `offset` off the subspace in a random orthogonal direction.
    Returns float32 features `(n, dim)` (offset by +5 so nothing is pre-centred) and int labels."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    on, off = basis[:, :latent], basis[:, latent:]
    centres = rng.normal(0.0, 3.0, size=(4, latent))
    z = centres[rng.integers(4, size=n)] + rng.normal(size=(n, latent))
    x = z @ on.T + noise * rng.normal(size=(n, dim))
    planted = rng.choice(n, int(round(frac * n)), replace=False)
    direction = rng.normal(size=(planted.size, dim - latent))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    x[planted] += offset * direction @ off.T
    labels = np.zeros(n, dtype=np.int8)
    labels[planted] = 1
    return (x + 5.0).astype(np.float32), labels


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray]:
    return planted_features()


# Bars: kNN and PCA must reach 0.95 (the bar). The others are set a little below the
# figures measured with these seeds (iforest 0.877, GCL autoencoder 1.000, GCL 0.998): an
# IsolationForest's axis-parallel cuts see an off-subspace shift only weakly in 64 dims.
BARS = {
    "knn": (lambda: KNNScorer(k=5), 0.95),
    "pca": (lambda: PCAScorer(n_components=16), 0.95),
    "iforest": (lambda: IsolationForestScorer(seed=0), 0.85),
    "gcl_ae": (lambda: GCLAutoencoderScorer(GCLConfig(seed=0, device="cpu")), 0.98),
    "gcl": (lambda: GCLScorer(GCLConfig(seed=0, device="cpu")), 0.97),
}


@pytest.mark.parametrize("name", sorted(BARS))
def test_planted_anomalies_are_found(planted, name: str) -> None:
    x, y = planted
    make, bar = BARS[name]
    scorer = make()
    assert isinstance(scorer, AnomalyScorer)
    scores = scorer.fit(x).score(x)
    assert scores.shape == (x.shape[0],) and scores.dtype == np.float64 and np.isfinite(scores).all()
    auc = roc_auc_score(y, scores)
    print(f"{name}: clip ROC AUC {auc:.4f}")
    assert auc >= bar


def _brute_knn(train: np.ndarray, query: np.ndarray, k: int, loo: bool) -> np.ndarray:
    d = np.sqrt(((query[:, None, :].astype(np.float64) - train[None, :, :]) ** 2).sum(-1))
    if loo:
        np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :k]


def test_knn_leave_one_out_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    near = _brute_knn(x, x, 3, loo=True)
    np.testing.assert_allclose(KNNScorer(k=3).fit(x).score(x), near.mean(1), rtol=1e-5)
    np.testing.assert_allclose(KNNScorer(k=3, reduction="kth").fit(x).score(x), near[:, -1], rtol=1e-5)
    # Without leave-one-out every row finds itself first (distance 0).
    self_incl = _brute_knn(x, x, 3, loo=False)
    assert np.allclose(self_incl[:, 0], 0)
    np.testing.assert_allclose(KNNScorer(k=3, exclude_self=False).fit(x).score(x), self_incl.mean(1), atol=1e-5)
    # New rows are scored against every training row.
    q = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(KNNScorer(k=3).fit(x).score(q), _brute_knn(x, q, 3, False).mean(1), rtol=1e-5)


def test_knn_leave_one_out_with_duplicate_rows() -> None:
    # Two identical rows: leave-one-out each still finds its twin at distance 0.
    x = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], dtype=np.float32)
    np.testing.assert_allclose(KNNScorer(k=1).fit(x).score(x), [0.0, 0.0, 5.0, 5.0], atol=1e-6)


def test_pca_error_matches_numpy_svd() -> None:
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(40, 6)) * [5, 3, 1, 0.5, 0.2, 0.1] + 7).astype(np.float32)
    q = rng.normal(size=(4, 6)).astype(np.float32)
    x64 = x.astype(np.float64)
    mu = x64.mean(0)
    _, _, vt = np.linalg.svd(x64 - mu, full_matrices=False)
    top = vt[:2]
    resid = (q - mu) - (q - mu) @ top.T @ top
    np.testing.assert_allclose(PCAScorer(n_components=2).fit(x).score(q), (resid**2).mean(1), rtol=1e-6)
    # Standardized variant: the same computation on x / std.
    sd = x64.std(0)
    _, _, vt = np.linalg.svd(x64 / sd - (x64 / sd).mean(0), full_matrices=False)
    z = q / sd - (x64 / sd).mean(0)
    resid = z - z @ vt[:2].T @ vt[:2]
    np.testing.assert_allclose(PCAScorer(2, standardize=True).fit(x).score(q), (resid**2).mean(1), rtol=1e-6)


def _two_tiles(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(0.0, 1.0, size=(60, 4))
    b = rng.normal(10.0, 1.0, size=(60, 4))
    x = np.concatenate([a, b]).astype(np.float32)
    tiles = np.repeat([0, 1], 60)
    order = rng.permutation(120)  # interleave, so grouping by tile index is exercised
    return x[order], tiles[order]


@pytest.mark.parametrize("make", [lambda: KNNScorer(k=3), lambda: PCAScorer(2), lambda: IsolationForestScorer(seed=0)])
def test_per_tile_fitting_separates_tiles(make) -> None:
    x, tiles = _two_tiles()
    scorer = make().fit(x, tiles)
    assert scorer.tiles_seen == [0, 1]
    # Each tile's scores equal a scorer fitted on that tile's rows alone.
    scores = scorer.score(x, tiles)
    for t in (0, 1):
        alone = make().fit(x[tiles == t])
        np.testing.assert_allclose(scores[tiles == t], alone.score(x[tiles == t]), rtol=1e-6)
    # A typical tile-1 row is normal at tile position 1 and anomalous at position 0, where a
    # pooled model (which has seen tile-1 rows) would call it normal.
    probe = np.full((1, 4), 10.0, dtype=np.float32)
    at_own = scorer.score(probe, np.array([1]))[0]
    at_other = scorer.score(probe, np.array([0]))[0]
    assert at_other > at_own
    assert at_other > scores[tiles == 0].max()


def test_per_tile_errors() -> None:
    x, tiles = _two_tiles()
    scorer = KNNScorer(k=3).fit(x, tiles)
    with pytest.raises(VADInputError, match="tile index 2 was not seen in fit .fitted tiles: \\[0, 1\\]"):
        scorer.score(x[:3], np.array([0, 1, 2]))
    with pytest.raises(VADInputError, match="pass tiles to score"):
        scorer.score(x)
    with pytest.raises(VADInputError, match="expected shape \\(120,\\)"):
        KNNScorer().fit(x, tiles[:5])
    with pytest.raises(VADInputError, match="tiles: tile indices must be >= 0"):
        KNNScorer().fit(x, -tiles)
    with pytest.raises(VADInputError, match="fitted without tiles"):
        KNNScorer(k=3).fit(x).score(x, tiles)
    with pytest.raises(VADInputError, match="knn: tile 1: features: 2 rows"):
        KNNScorer(k=3).fit(x[:6], np.array([0, 0, 0, 0, 1, 1]))


@pytest.mark.parametrize("name", ["knn", "pca", "iforest", "gcl_ae", "gcl"])
def test_bad_features(name: str) -> None:
    scorer = make_scorer(name)
    with pytest.raises(VADInputError, match="before fit"):
        scorer.score(np.zeros((3, 4), np.float32))
    bad = np.ones((30, 4), np.float32)
    bad[3, 1] = np.nan
    with pytest.raises(VADInputError, match="non-finite"):
        scorer.fit(bad)
    with pytest.raises(VADInputError, match="empty"):
        scorer.fit(np.zeros((0, 4), np.float32))


def test_dimension_mismatch_and_registry() -> None:
    x, _ = _two_tiles()
    scorer = make_scorer("pca", n_components=2).fit(x)
    with pytest.raises(VADInputError, match="has 3 dimensions, expected 4"):
        scorer.score(x[:, :3])
    with pytest.raises(VADInputError, match="unknown name 'nope'"):
        make_scorer("nope")
    with pytest.raises(VADInputError, match="bad arguments"):
        make_scorer("knn", kk=3)
    with pytest.raises(VADInputError, match="n_components=16 must be below"):
        PCAScorer(16).fit(x)
    assert set(SCORERS) == {"knn", "pca", "iforest", "gcl_ae", "gcl", "diffusion"}
    assert make_scorer("knn", k=7).to_dict() == {"name": "knn", "k": 7, "reduction": "mean", "exclude_self": True}


def test_batch_pseudo_labels_by_hand() -> None:
    # [1, 2, 3, 4, 10]: mean 4, population std sqrt(10) = 3.16 -> only 10 is above 7.16.
    labels = batch_pseudo_labels(torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0]), 1.0)
    assert labels.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert batch_pseudo_labels(torch.tensor([1.0, 2.0, 3.0, 4.0, 10.0]), 0.0).tolist() == [0, 0, 0, 0, 1]


def test_gcl_is_seeded_and_leaves_global_rng_alone(planted) -> None:
    x, _ = planted
    x = x[:300]
    config = GCLConfig(ae_epochs=3, d_epochs=3, epochs=2, seed=5, device="cpu")
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = GCLScorer(config).fit(x).score(x)
    after = torch.rand(1)
    b = GCLScorer(config).fit(x).score(x)
    np.testing.assert_array_equal(a, b)
    assert before == after
    c = GCLScorer(config, seed=6).fit(x).score(x)
    assert not np.array_equal(a, c)
    # The discriminator scores, not the generator: its logits differ from reconstruction errors.
    ae = GCLAutoencoderScorer(config).fit(x).score(x)
    assert not np.allclose(a, ae)


def test_gcl_history_records_pseudo_label_share(planted) -> None:
    x, y = planted
    scorer = GCLScorer(GCLConfig(ae_epochs=2, d_epochs=2, epochs=2, device="cpu")).fit(x)
    hist = scorer.history[-1]
    assert [h["phase"] for h in hist] == ["autoencoder"] * 2 + ["discriminator"] * 2 + ["cooperative"] * 2
    assert all(0.0 < h["pseudo_anomalous"] < 0.5 for h in hist if h["phase"] == "cooperative")


def test_diffusion_adaptor_matches_training_and_scoring(planted, tmp_path) -> None:
    from vad_core.diffusion.denoiser import save_checkpoint
    from vad_core.diffusion.reconstruction import ScoreConfig, score_rows
    from vad_core.diffusion.training import TrainConfig, fit, trained_denoiser

    x, y = planted
    train = TrainConfig(
        epochs=6,
        batch_size=256,
        min_steps_per_epoch=20,
        hidden=(128, 64),
        emb_dim=32,
        fourier_features=32,
        lr=1e-3,
        patience=0,
        device="cpu",
    )
    score = ScoreConfig(n_draws=4)
    scorer = make_scorer("diffusion", train_config=train, score_config=score)
    assert isinstance(scorer, AnomalyScorer)
    with pytest.raises(VADInputError, match="before fit"):
        scorer.score(x)
    scores = scorer.fit(x).score(x)
    # The adaptor is exactly training.fit followed by scoring.score_rows.
    direct = score_rows(trained_denoiser(fit(x, train)), x, score)
    np.testing.assert_array_equal(scores, direct)
    assert scores.dtype == np.float64 and scorer.result.history
    # Measured 0.77 after this short training (the training tests hold the real bar).
    assert roc_auc_score(y, scores) >= 0.7
    path = save_checkpoint(scorer.result, tmp_path / "denoiser.pt")
    reloaded = type(scorer).from_checkpoint(path, score_config=score, device="cpu")
    np.testing.assert_array_equal(reloaded.score(x), scores)
    assert scorer.to_dict()["train"]["epochs"] == 6
