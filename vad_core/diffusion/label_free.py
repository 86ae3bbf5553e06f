"""Label-free rules the detector's fit applies to unlabelled rows (no labels are read here).

- `posterior_neighbours` / `choose_sigma` / `label_free_sigma`: the denoising score's sigma,
  where the ideal leave-one-out denoiser of the rows averages over about `target` rows (the
  kNN baseline's k). At smaller sigma the ideal denoiser explains every row by its nearest twin
  (a trained model returns the anomalies it saw); at larger sigma the score degenerates to the
  distance to the mean. On Ped2 tiles the median count was 1.0 / 1.1 / 8.7 / 345 at sigma
  2 / 4 / 8 / 16 (sigma_data units).
- `otsu_threshold`: the cut of a score sample with the largest between-class variance.
- `choose_trim_share`: the share of fitted rows a trimmed refit drops, the share above Otsu's
  cut of the log scores ("otsu") or in the upper component of a two-Gaussian mixture of them
  when BIC prefers two components to one ("mixture"); capped either way.

They live in `diffusion` (not `study.selection`, which re-exports them) because fitting the
detector (`vad_core.diffusion.recipes`) applies them and `diffusion` never imports `study`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vad_core.diffusion.preprocessing import FeatureScaler
from vad_core.errors import VADInputError


def otsu_threshold(scores: np.ndarray) -> float:
    """Otsu's threshold of `(M,)` scores: the cut maximizing the between-class variance.

    Candidate cuts lie midway between consecutive distinct sorted scores; a constant input
    returns its value.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise VADInputError("otsu_threshold: need a non-empty 1-D array of finite scores")
    if s[0] == s[-1]:
        return float(s[0])
    n = s.size
    w0 = np.arange(1, n) / n  # share below the cut after i+1 rows
    csum = np.cumsum(s)[:-1]
    mu0 = csum / np.arange(1, n)
    mu1 = (s.sum() - csum) / (n - np.arange(1, n))
    between = w0 * (1.0 - w0) * (mu0 - mu1) ** 2
    valid = s[1:] > s[:-1]  # a cut must separate distinct values
    between[~valid] = -np.inf
    i = int(np.argmax(between))
    return float(0.5 * (s[i] + s[i + 1]))


TRIM_RULES = ("otsu", "mixture")


def mixture_upper_share(log_scores: np.ndarray, seed: int = 0) -> float:
    """Share of `(M,)` log scores in the upper component of a 2-Gaussian mixture, 0 if BIC prefers one Gaussian.

    Unlike Otsu's cut, which always splits a sample in two (a unimodal heavy tail included), the
    mixture is only believed when the data pay for its extra parameters. A row counts as upper when
    that component's posterior exceeds 1/2. scikit-learn's EM, 5 initializations, fixed seed.
    """
    from sklearn.mixture import GaussianMixture  # scikit-learn is a baseline dependency; imported when used

    z = np.asarray(log_scores, dtype=np.float64).reshape(-1, 1)
    one = GaussianMixture(1, random_state=seed).fit(z)
    two = GaussianMixture(2, random_state=seed, n_init=5).fit(z)
    if two.bic(z) >= one.bic(z):
        return 0.0
    upper = int(np.argmax(two.means_.ravel()))
    return float(np.mean(two.predict_proba(z)[:, upper] > 0.5))


def choose_trim_share(scores: np.ndarray, max_share: float = 0.3, rule: str = "otsu") -> float:
    """Label-free share of rows to drop before a refit, from the shape of the log scores, capped at `max_share`.

    "otsu": the share above Otsu's cut. When the anomalous rows form an upper mode of the
    (out-of-fold) scores, the cut separates that mode and the share above it estimates theirs; on
    a unimodal sample it still cuts (on Ped2 and the demo it put 32-40% above, so the cap decided).
    "mixture": `mixture_upper_share`, 0 when one Gaussian explains the log scores as well.
    Log scores because the denoising error is a skewed, ratio-scale quantity. `scores (N,)` must
    be positive.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size < 2 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise VADInputError("choose_trim_share: need >= 2 finite positive scores")
    if not 0.0 <= max_share < 1.0:
        raise VADInputError(f"choose_trim_share: max_share must lie in [0, 1), got {max_share}")
    if rule not in TRIM_RULES:
        raise VADInputError(f"choose_trim_share: rule must be one of {TRIM_RULES}, got {rule!r}")
    log_s = np.log(s)
    above = float(np.mean(log_s > otsu_threshold(log_s))) if rule == "otsu" else mixture_upper_share(log_s)
    return min(float(max_share), above)


def posterior_neighbours(
    x: np.ndarray,
    sigmas: Sequence[float],
    tiles: np.ndarray | None = None,
    max_rows: int = 4096,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Median effective number of rows the exact leave-one-out denoiser averages over, per sigma.

    For scaled rows `x (N, D)` (the denoiser's space) the ideal denoiser of the empirical data at
    noise sigma is a softmax-weighted mean of the rows with weights w_j ~ exp(-|x - x_j|^2 / 2 sigma^2);
    n_eff = 1 / sum_j w_j^2 (leave-one-out: a row never weighs itself; with `tiles`, only rows of
    the same tile position count). n_eff ~ 1: the denoiser explains a row by its nearest twin, so
    a trained model that saw an anomaly returns it (memorization); n_eff ~ N: the score is the
    distance to the mean. In between it is a kNN-like density score. Returns `(len(sigmas),)`.
    `groups (N,)` (video ids): leave the whole group out, not just the row (what a model that never
    saw the row's video approximates); rows with no other-group row of their tile are skipped.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise VADInputError(f"posterior_neighbours: need (N >= 3, D) rows, got {x.shape}")
    rng = np.random.default_rng(seed)
    idx = np.arange(x.shape[0]) if x.shape[0] <= max_rows else np.sort(rng.choice(x.shape[0], max_rows, replace=False))
    x = x[idx]
    sq = np.einsum("ij,ij->i", x, x)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    if tiles is not None:
        t = np.asarray(tiles)[idx]
        d2[t[:, None] != t[None, :]] = np.inf
    if groups is not None:
        g = np.asarray(groups).astype(str)[idx]
        d2[g[:, None] == g[None, :]] = np.inf
        d2 = d2[np.isfinite(d2).any(axis=1)]
        if d2.shape[0] == 0:
            raise VADInputError("posterior_neighbours: no row has a row of another group (video) to compare with")
    out = []
    for sigma in sigmas:
        logits = -d2 / (2.0 * float(sigma) ** 2)
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(axis=1, keepdims=True)
        out.append(float(np.median(1.0 / np.square(w).sum(axis=1))))
    return np.asarray(out)


def choose_sigma(neighbours: Sequence[float] | np.ndarray, sigmas: Sequence[float], target: float = 5.0) -> float:
    """The sigma whose `posterior_neighbours` value is nearest `target` on a log scale (ties: smaller sigma).

    target = 5 matches the kNN baseline's k: the score then compares a row with a handful of
    neighbours, neither its nearest twin (a memorized anomaly) nor the whole data set.
    """
    if len(neighbours) != len(sigmas) or not len(sigmas):
        raise VADInputError("choose_sigma: need one neighbour count per sigma")
    gap = [abs(np.log(max(n, 1e-12)) - np.log(target)) for n in neighbours]
    return float(sorted(zip(gap, sigmas, strict=True))[0][1])


SIGMA_CANDIDATES: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def label_free_sigma(
    scaler: FeatureScaler,
    sigma_data: float,
    features: np.ndarray,
    tiles: np.ndarray | None = None,
    candidates: Sequence[float] = SIGMA_CANDIDATES,
    target: float = 5.0,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, dict[str, float]]:
    """The denoising score's sigma (units of sigma_data) chosen from unlabelled rows alone.

    `features (N, D)` are raw rows; they are put in the denoiser's space with its own `scaler`
    and measured in units of `sigma_data`, then `choose_sigma(posterior_neighbours(...))` picks
    the candidate where the ideal leave-one-out denoiser averages over about `target` rows.
    Returns the chosen sigma and `{"sigma=8": n_eff, ...}` for logging.
    """
    x = np.asarray(scaler.transform(np.asarray(features, dtype=np.float32)), dtype=np.float64)
    counts = posterior_neighbours(x / float(sigma_data), candidates, tiles=tiles, seed=seed, groups=groups)
    return choose_sigma(counts, candidates, target), {
        f"sigma={s:g}": float(c) for s, c in zip(candidates, counts, strict=True)
    }


__all__ = [
    "SIGMA_CANDIDATES",
    "TRIM_RULES",
    "choose_sigma",
    "choose_trim_share",
    "label_free_sigma",
    "mixture_upper_share",
    "otsu_threshold",
    "posterior_neighbours",
]
