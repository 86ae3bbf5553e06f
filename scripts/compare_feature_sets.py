"""Prove the frame pass: its features against the crop pass's, and every scorer's frame AUC on both.

    .venv/bin/python scripts/compare_feature_sets.py --root /tmp/feature_sets \\
        [--dataset ucsd_ped2 --dataset demo] [--seeds 0,1,2] [--crop-cache ucsd_ped2=/path/to/i3d_tiles]

For each dataset and feature set (`crop`: one I3D pass per tile crop, the published method;
`frame`: one pass per clip, Mixed_5c pooled over the same tiles), the whole pipeline runs as
`vad demo` runs it (`VAD_HOME=<root>/<dataset>/<set>`, the pipeline's default recipe; the
denoiser, the diffusion score and the seeded baselines get each `--seeds` value), features
extracted once per home and reused. Nothing is chosen on labels: every figure is reported, per
half of the Ped2 test videos (01-03, 04-06), on all six and on the demo's test videos.

Writes `<root>/comparison.json` (every run, the per-row similarity distribution, the decision)
and `<root>/comparison.md`; results already in comparison.json are not run again.

`--crop-cache DATASET=DIR` seeds the crop home from tables extracted earlier (same format),
after re-extracting `--verify-videos` of them and checking they agree (max abs diff <= 1e-4).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vad_core.evaluation.metrics import roc_auc, smooth_scores  # noqa: E402
from vad_core.evaluation.report import scorer_frames  # noqa: E402
from vad_core.features import extract_features, load_backbone  # noqa: E402
from vad_core.features.regions import RegionConfig  # noqa: E402
from vad_core.footage.clips import ClipConfig  # noqa: E402
from vad_core.io.feature_tables import read_clip_features  # noqa: E402
from vad_core.io.store import LocalTableStore, MemoryTableStore  # noqa: E402
from vad_core.io.tables import feature_matrix  # noqa: E402
from vad_pipeline.assets.evaluation import report_tables  # noqa: E402
from vad_pipeline.resources.storage import DatasetKeys  # noqa: E402
from vad_pipeline.specs import load_spec  # noqa: E402

SETS = ("crop", "frame")
SUBSETS: dict[str, dict[str, list[str] | None]] = {
    "ucsd_ped2": {
        "01-03": [f"testing/frames/{i:02d}" for i in (1, 2, 3)],
        "04-06": [f"testing/frames/{i:02d}" for i in (4, 5, 6)],
        "01-06": [f"testing/frames/{i:02d}" for i in range(1, 7)],
    },
    "demo": {"test": None},  # every evaluated video
}
TOLERANCE = 0.005  # the frame pass becomes the default only if no AUC drops by more than 0.5 points


def run_pipeline(home: Path, dataset: str, feature_set: str, seed: int, log: Path) -> dict[str, Any]:
    """One `vad demo` run in `home`; returns its summary JSON."""
    config = {
        "clip_features": {"backbone_pass": feature_set},
        "denoiser": {"seed": seed},
        "segment_scores": {"seed": seed},
        "baseline_scores": {"seed": seed},
    }
    cfg, summary = home / f"config_seed{seed}.json", home / f"summary_seed{seed}.json"
    cfg.write_text(json.dumps(config))
    env = {**os.environ, "VAD_HOME": str(home), "VAD_DATASET": dataset}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [str(REPO / ".venv" / "bin" / "vad"), "demo", "--config", str(cfg), "--summary-json", str(summary)]
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n== {dataset} {feature_set} seed {seed}: {' '.join(cmd)}\n")
        fh.flush()
        subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=True, cwd=REPO)
    out = json.loads(summary.read_text())
    out["wall_s"] = time.perf_counter() - t0
    return out


def auc_table(home: Path, dataset: str) -> dict[str, dict[str, dict[str, float]]]:
    """`{scorer: {subset: {"auc": ..., "auc_smoothed": ...}}}` from the stored score tables."""
    store, keys = LocalTableStore(home), DatasetKeys(dataset)
    frames = scorer_frames(report_tables(store, keys))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for scorer, table in frames.items():
        labelled = table[table["label"].notna()]
        smoothed = smooth_scores(labelled, 8.0)
        out[scorer] = {}
        for subset, videos in SUBSETS[dataset].items():
            pick = labelled["video_id"].isin(videos) if videos else labelled["video_id"].notna()
            raw = labelled[pick]
            sm = smoothed[pick.to_numpy()]
            out[scorer][subset] = {
                "auc": roc_auc(raw["label"].astype(int).to_numpy(), raw["score"].to_numpy()),
                "auc_smoothed": roc_auc(sm["label"].astype(int).to_numpy(), sm["score"].to_numpy()),
                "frames": len(raw),
            }
    return out


def similarity(crop_home: Path, frame_home: Path, dataset: str) -> dict[str, Any]:
    """Per (clip, tile) row: cosine similarity and max abs difference of the two sets' features."""
    keys = DatasetKeys(dataset)
    a_store, b_store = LocalTableStore(crop_home), LocalTableStore(frame_home)
    cos, diff, tiles = [], [], []
    for key in a_store.list(keys.features_prefix, ".parquet"):
        if not b_store.exists(key):
            continue
        a, _ = read_clip_features(a_store, key)
        b, meta = read_clip_features(b_store, key)
        assert json.loads(meta["region_config"])["backbone_pass"] == "frame", key
        cols = ["clip", "tile", "x", "y", "w", "h"]
        if not (a[cols].to_numpy() == b[cols].to_numpy()).all():
            raise SystemExit(f"{key}: the two tables do not hold the same rows")
        xa, xb = feature_matrix(a), feature_matrix(b)
        cos.append((xa * xb).sum(1) / np.linalg.norm(xa, axis=1) / np.linalg.norm(xb, axis=1))
        diff.append(np.abs(xa - xb).max(1))
        tiles.append(a["tile"].to_numpy())
    c, d, t = np.concatenate(cos), np.concatenate(diff), np.concatenate(tiles)
    q = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)

    def dist(x: np.ndarray) -> dict[str, float]:
        return {f"q{int(p * 100):02d}": float(np.quantile(x, p)) for p in q} | {"mean": float(x.mean())}

    return {
        "rows": len(c),
        "cosine": dist(c),
        "max_abs_diff": dist(d),
        "per_tile": {int(k): {"cosine": dist(c[t == k]), "max_abs_diff": dist(d[t == k])} for k in np.unique(t)},
    }


def _video_id(table: Path, root: Path) -> str:
    return table.relative_to(root).with_suffix("").as_posix()


def seed_crop_cache(cache: Path, home: Path, dataset: str, verify: int, log: Path) -> dict[str, Any]:
    """Copy cached crop-pass tables into `home` after re-extracting `verify` videos and comparing."""
    keys = DatasetKeys(dataset)
    target = home / keys.features_prefix
    spec = load_spec(dataset, home=home)
    tables = [p for p in sorted(cache.rglob("*.parquet")) if spec.includes(_video_id(p, cache))]
    backbone = load_backbone("i3d", compile=False)
    checked = {}
    for path in tables[:: max(1, len(tables) // max(verify, 1))][:verify]:
        cached_store = LocalTableStore(path.parent)
        df, meta = read_clip_features(cached_store, path.name)
        fresh = MemoryTableStore()
        row = {
            "video_id": meta["video_id"],
            "path": meta["video_path"],
            "kind": meta["video_kind"],
            "status": "ok",
            "fingerprint": meta["video_fingerprint"],
            "n_frames": int(meta["n_frames"]),
            "width": int(meta["width"]),
            "height": int(meta["height"]),
            "fps": None,
        }
        extract_features(row, backbone, ClipConfig(), fresh, "v.parquet", regions=RegionConfig("crop"))
        new, _ = read_clip_features(fresh, "v.parquet")
        gap = float(np.abs(feature_matrix(new) - feature_matrix(df)).max())
        checked[meta["video_id"]] = gap
        with open(log, "a") as fh:
            fh.write(f"verify {meta['video_id']}: max abs diff {gap:.3g}\n")
        if gap > 1e-4:
            raise SystemExit(f"{path}: cached features differ from a fresh extraction by {gap}")
    for path in tables:
        dest = target / path.relative_to(cache)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    return {"cache": str(cache), "tables": len(tables), "verified_max_abs_diff": checked}


def decide(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean AUC over seeds per (dataset, scorer, subset) for each set, and the frame-minus-crop gap."""
    means: dict[tuple[str, str, str, str], list[float]] = {}
    for r in runs:
        for scorer, subsets in r["auc"].items():
            for subset, m in subsets.items():
                means.setdefault((r["dataset"], r["set"], scorer, subset), []).append(m["auc"])
    rows, worst = [], 1.0
    for (dataset, fset, scorer, subset), values in sorted(means.items()):
        if fset != "frame" or (dataset, "crop", scorer, subset) not in means:
            continue
        crop = means[(dataset, "crop", scorer, subset)]
        gap = float(np.mean(values) - np.mean(crop))
        worst = min(worst, gap)
        rows.append(
            {
                "dataset": dataset,
                "scorer": scorer,
                "subset": subset,
                "crop": crop,
                "frame": values,
                "crop_mean": float(np.mean(crop)),
                "frame_mean": float(np.mean(values)),
                "gap": gap,
            }
        )
    return {"rows": rows, "worst_gap": worst, "switch_default": bool(rows) and worst >= -TOLERANCE}


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Frame pass vs crop pass", ""]
    qs = ("q00", "q05", "q25", "q50", "q75", "q95", "q100")
    for dataset, sim in result.get("similarity", {}).items():
        c, d = sim["cosine"], sim["max_abs_diff"]
        lines += [
            f"## {dataset}: {sim['rows']} rows, frame-pass vs crop-pass feature",
            "",
            "| | min | 5% | 25% | median | 75% | 95% | max |",
            "|---|---|---|---|---|---|---|---|",
            "| cosine | " + " | ".join(f"{c[k]:.3f}" for k in qs) + " |",
            "| max abs diff | " + " | ".join(f"{d[k]:.3f}" for k in qs) + " |",
            "",
            "Per tile (median cosine): "
            + ", ".join(f"tile {t}: {v['cosine']['q50']:.3f}" for t, v in sim["per_tile"].items()),
            "",
        ]
    dec = result.get("decision", {})
    if dec.get("rows"):
        lines += [
            "## Frame AUC (mean over seeds; per-seed values in brackets)",
            "",
            "| dataset | scorer | videos | crop | frame | frame - crop (points) |",
            "|---|---|---|---|---|---|",
        ]
        for r in dec["rows"]:
            seeds_c = ", ".join(f"{100 * v:.1f}" for v in r["crop"])
            seeds_f = ", ".join(f"{100 * v:.1f}" for v in r["frame"])
            lines.append(
                f"| {r['dataset']} | {r['scorer']} | {r['subset']} | {100 * r['crop_mean']:.2f} ({seeds_c}) | "
                f"{100 * r['frame_mean']:.2f} ({seeds_f}) | {100 * r['gap']:+.2f} |"
            )
        lines += [
            "",
            f"Worst gap {100 * dec['worst_gap']:+.2f} points: the frame pass "
            + ("becomes" if dec["switch_default"] else "does NOT become")
            + f" the default (rule: no AUC more than {100 * TOLERANCE:.1f} points below the crop pass).",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="one VAD_HOME per (dataset, feature set) under here")
    ap.add_argument("--dataset", action="append", help="spec names (default: ucsd_ped2 and demo)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--crop-cache", action="append", default=[], help="DATASET=DIR of cached crop-pass tables")
    ap.add_argument("--verify-videos", type=int, default=2)
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    log, out = root / "comparison.log", root / "comparison.json"
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"runs": []}
    caches = dict(item.split("=", 1) for item in args.crop_cache)
    seeds = [int(s) for s in args.seeds.split(",")]
    for dataset in args.dataset or ["ucsd_ped2", "demo"]:
        for fset in SETS:
            home = root / dataset / fset
            home.mkdir(parents=True, exist_ok=True)
            if fset == "crop" and dataset in caches and dataset not in result.setdefault("caches", {}):
                cache = Path(caches[dataset])
                result["caches"][dataset] = seed_crop_cache(cache, home, dataset, args.verify_videos, log)
            for seed in seeds:
                if any(r["dataset"] == dataset and r["set"] == fset and r["seed"] == seed for r in result["runs"]):
                    continue
                summary = run_pipeline(home, dataset, fset, seed, log)
                result["runs"].append(
                    {
                        "dataset": dataset,
                        "set": fset,
                        "seed": seed,
                        "wall_s": summary["wall_s"],
                        "stage_seconds": summary["stage_seconds"],
                        "auc": auc_table(home, dataset),
                    }
                )
                out.write_text(json.dumps(result, indent=1))
        sim = similarity(root / dataset / "crop", root / dataset / "frame", dataset)
        result.setdefault("similarity", {})[dataset] = sim
        out.write_text(json.dumps(result, indent=1))
    result["decision"] = decide(result["runs"])
    result["loadavg"] = os.getloadavg()
    out.write_text(json.dumps(result, indent=1))
    (root / "comparison.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
