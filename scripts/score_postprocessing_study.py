"""Issue 9: label-free post-processing of row scores, measured for the default detector and every baseline alike.

    nice -n 10 .venv/bin/python scripts/score_postprocessing_study.py --ped2 $VAD_HOME/ucsd_ped2/features \\
        --demo $VAD_HOME/demo/features --demo-ground-truth $VAD_HOME/demo/footage/ground_truth.csv \\
        --seeds 0,1,2 --scores /tmp/issue9_scores

For each dataset and seed it fits the `robust` detector exactly as `vad_core.study.protocol.run_recipe` does
(same seed offsets, so seed 0 reproduces the study's records), scores every fitted row with it and with the
five baselines (fitted on the same unlabelled rows), and keeps the row scores in `--scores` (one `.npz` per
dataset and seed, reused when present; delete them to refit). Then it prints two tables of frame ROC AUC (%),
mean (min-max) over the seeds, per evaluation group:

1. **per-tile normalization** before the clip's max over tiles: each tile position's scores mapped by
   statistics of the fitted rows at that position (z-score; median / IQR; the same on log scores; rank). A
   tile position whose scores run higher (people nearer the camera are larger) then no longer dominates the max.
2. **model ensembles**: the mean of the members' ranks, or of their standardized log scores (equal weights,
   no labels), for the diffusion default with kNN and / or IsolationForest, and kNN + IsolationForest;
3. **temporal smoothing** of the frame scores (`vad_core.evaluation.smooth_scores`, the report's second figure)
   at a few widths in frames;
4. **how far apart the raw scorers really are**: `vad_core.study.bootstrap.paired_auc_gap` (`--bootstrap`
   resamples of 16-frame blocks) of the frame-AUC difference between the diffusion default and each baseline, per
   seed: its 90% interval and the share of resamples where the default is ahead.

Every transform is applied to the baselines too: a gain counts only where the diffusion default gains more.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import detector_study as ds  # noqa: E402

from vad_core.diffusion.recipes import fit_detector, preset  # noqa: E402
from vad_core.evaluation.metrics import clips_to_frames, frame_labels, roc_auc, smooth_scores  # noqa: E402
from vad_core.scoring.rows import clip_scores, row_keys_for  # noqa: E402
from vad_core.scoring.scorers.registry import make_scorer  # noqa: E402
from vad_core.study.bootstrap import paired_auc_gap  # noqa: E402
from vad_core.study.data import StudyData  # noqa: E402
from vad_core.study.protocol import group_auc, seeded  # noqa: E402

SCORERS = ("robust", "knn", "pca", "iforest", "gcl_ae", "gcl")


def fit_scores(data: StudyData, seed: int) -> dict[str, np.ndarray]:
    """`(N,)` row scores of the `robust` detector (seed offsets as run_recipe) and of every baseline."""
    videos = data.rows["video_id"].astype(str).to_numpy()
    keys = row_keys_for(data.rows)
    recipe, train = preset("robust")
    rc, tc = seeded(recipe, train, seed, int(data.tiles.max()) + 1)
    fitted = fit_detector(data.features, videos, tc, rc, tiles=data.tiles, row_keys=keys)
    out = {"robust": fitted.detector.score_fitted(data.features, videos, data.tiles, keys)[0]}
    for name in SCORERS[1:]:
        kwargs = dict(ds.BASELINE_KWARGS.get(name, {}))
        if name in ds.SEEDED:
            kwargs["seed"] = seed
        out[name] = make_scorer(name, **kwargs).fit(data.features, data.tiles).score(data.features, data.tiles)
    return out


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean()) / v.std()


def _robust_z(v: np.ndarray) -> np.ndarray:
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return (v - med) / (q3 - q1)


def _log(v: np.ndarray) -> np.ndarray:
    # shifted so that non-positive scores (PCA residuals can be 0, IsolationForest's are signed) have a log
    return np.log(v - v.min() + 1e-6 * (v.max() - v.min())) if v.min() <= 0 else np.log(v)


def _rank(v: np.ndarray) -> np.ndarray:
    return rankdata(v) / len(v)


TILE_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "raw": None,
    "z": _z,
    "median/IQR": _robust_z,
    "log, median/IQR": lambda v: _robust_z(_log(v)),
    "rank": _rank,
}
ENSEMBLES = (("robust", "knn"), ("robust", "iforest"), ("robust", "knn", "iforest"), ("knn", "iforest"))
COMBINE = {"mean rank": _rank, "mean log z": lambda v: _z(_log(v))}


SMOOTHING_FRAMES = (None, 4.0, 8.0, 16.0)


def smoothed_auc(data: StudyData, scores: np.ndarray, videos: Sequence[str], sigma: float | None) -> float:
    """`group_auc` with the frame scores Gaussian-smoothed over `sigma` frames first (None = not smoothed)."""
    if sigma is None:
        return group_auc(data, scores, videos)
    clips = clip_scores(data.rows.assign(score=scores))
    clips = clips[clips["video_id"].astype(str).isin(set(videos))]
    frames = smooth_scores(clips_to_frames(clips.assign(anomalous=False), data.n_frames), sigma)
    return 100.0 * roc_auc(frame_labels(frames, data.ground_truth), frames["score"].to_numpy())


def per_tile(scores: np.ndarray, tiles: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """`f` applied to each tile position's scores on its own."""
    out = np.empty(len(scores), dtype=np.float64)
    for t in np.unique(tiles):
        on = tiles == t
        out[on] = f(scores[on])
    return out


def tables(data: StudyData, groups: Mapping[str, Sequence[str]], runs: Mapping[int, Mapping[str, np.ndarray]]):
    """(tile-normalization, ensemble, smoothing records): one per (scorer or ensemble, transform, seed, group)."""
    tile_rows, ens_rows, smooth_rows = [], [], []
    for seed, s in runs.items():
        for name in SCORERS:
            for tf, f in TILE_TRANSFORMS.items():
                v = s[name].astype(np.float64) if f is None else per_tile(s[name].astype(np.float64), data.tiles, f)
                tile_rows += [{"scorer": name, "transform": tf, "seed": seed, "group": g,
                               "auc": group_auc(data, v, vids)} for g, vids in groups.items()]  # fmt: skip
            for sigma in SMOOTHING_FRAMES:
                label = "none" if sigma is None else f"{sigma:g} frames"
                smooth_rows += [{"scorer": name, "transform": label, "seed": seed, "group": g,
                                 "auc": smoothed_auc(data, s[name].astype(np.float64), vids, sigma)}
                                for g, vids in groups.items()]  # fmt: skip
        for members in ENSEMBLES:
            for how, f in COMBINE.items():
                v = np.mean([f(s[m].astype(np.float64)) for m in members], axis=0)
                ens_rows += [{"scorer": " + ".join(members), "transform": how, "seed": seed, "group": g,
                              "auc": group_auc(data, v, vids)} for g, vids in groups.items()]  # fmt: skip
    return pd.DataFrame(tile_rows), pd.DataFrame(ens_rows), pd.DataFrame(smooth_rows)


def summary(df: pd.DataFrame) -> str:
    g = df.groupby(["scorer", "transform", "group"], sort=False)["auc"]
    cells = g.agg(lambda a: f"{a.mean():.1f} ({a.min():.1f}-{a.max():.1f})" if len(a) > 1 else f"{a.mean():.1f}")
    return cells.unstack("group").to_string()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ped2", help="folder of the 22 Ped2 videos' clip-features tables")
    p.add_argument("--ped2-ground-truth", default=str(ds.PED2_GT))
    p.add_argument("--ped2-heavy", help="folder of the Ped2 tables: fit training 01-08 + test 01-06 only")
    p.add_argument("--demo", help="folder of the demo dataset's clip-features tables")
    p.add_argument("--demo-ground-truth")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--scores", required=True, help="folder for the row scores (.npz per dataset and seed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples of the paired bootstrap; 0 = skip it")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = Path(args.scores)
    folder.mkdir(parents=True, exist_ok=True)
    datasets = []
    if args.ped2:
        datasets.append((ds.load_ped2(args.ped2, args.ped2_ground_truth), ds.PED2_GROUPS))
    if args.ped2_heavy:
        datasets.append((ds.load_ped2_heavy(args.ped2_heavy, args.ped2_ground_truth), ds.PED2_GROUPS))
    if args.demo:
        if not args.demo_ground_truth:
            p.error("--demo needs --demo-ground-truth")
        demo = ds.load_demo(args.demo, args.demo_ground_truth)
        datasets.append((demo, {"test": list(demo.evaluated)}))
    for data, groups in datasets:
        runs = {}
        for seed in (int(s) for s in args.seeds.split(",")):
            path = folder / f"{data.name}_seed{seed}.npz"
            if not path.exists():
                print(f"{data.name} seed {seed}: fitting robust and the baselines", flush=True)
                tmp = path.with_suffix(".tmp.npz")
                np.savez(tmp, allow_pickle=False, **fit_scores(data, seed))
                tmp.replace(path)  # atomic: an interrupted fit leaves no half-written scores behind
            with np.load(path) as z:
                runs[seed] = {k: z[k] for k in SCORERS}
        tile_df, ens_df, smooth_df = tables(data, groups, runs)
        print(f"\n## {data.name}: per-tile normalization before the max over tiles ({len(runs)} seeds)\n")
        print(summary(tile_df))
        print(f"\n## {data.name}: model ensembles ({len(runs)} seeds)\n")
        print(summary(ens_df))
        print(f"\n## {data.name}: temporal smoothing of the frame scores ({len(runs)} seeds)\n")
        print(summary(smooth_df))
        if args.bootstrap:
            title = f"robust minus each baseline, paired block bootstrap ({args.bootstrap} resamples)"
            print(f"\n## {data.name}: {title}\n")
            lines = []
            for seed, sc in runs.items():
                for name in SCORERS[1:]:
                    for g, vids in groups.items():
                        gap = paired_auc_gap(data, sc["robust"], sc[name], vids, n_resamples=args.bootstrap)
                        cell = f"{gap.difference:+.1f} [{gap.low:+.1f}, {gap.high:+.1f}] {100 * gap.share_ahead:.0f}%"
                        lines.append({"baseline": name, "group": g, "seed": seed, "cell": cell})
            boot = pd.DataFrame(lines).pivot_table(index=["baseline", "seed"], columns="group", values="cell",
                                                   aggfunc="first", sort=False)  # fmt: skip
            print(boot.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
