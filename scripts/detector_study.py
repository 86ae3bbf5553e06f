"""Issue 9's validation protocol: detector recipes and baselines on Ped2 and the demo, several seeds.

    nice -n 10 .venv/bin/python scripts/detector_study.py \\
        --ped2 $VAD_HOME/ped2/features --demo $VAD_HOME/demo/features \\
        --demo-ground-truth $VAD_HOME/demo/ground_truth.csv \\
        --recipes robust,single --baselines knn,pca,iforest,gcl_ae,gcl --seeds 0,1,2 \\
        --out results/detector_study.jsonl
    .venv/bin/python scripts/detector_study.py --render results/detector_study.jsonl [more.jsonl ...]

`--ped2` / `--demo` are folders of clip-features tables (one Parquet per video, as the pipeline's
`clip_features` asset writes them). Ped2: the 22 videos of ../shared/data/ucsd_ped2 (16 training,
test 01-06) are all fitted unlabelled, frame AUC on test 01-03, 04-06 and 01-06 (protocol (a)'s
halves); tables of other videos in the folder (e.g. flipped copies) are left out. Demo: every
video fitted, AUC on its test videos (protocol (b): never chosen on). One JSON line per
(scenario, recipe, seed, group) is appended to `--out`; a (scenario, recipe, seed) already there is
skipped, so a run resumes. `--render` prints the summary, protocol (a) and the cost table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vad_core.diffusion.recipes import preset  # noqa: E402
from vad_core.evaluation.formatting import markdown_table  # noqa: E402
from vad_core.footage.ground_truth import read_ground_truth  # noqa: E402
from vad_core.io.store import LocalTableStore  # noqa: E402
from vad_core.study.data import StudyData, load_study_data  # noqa: E402
from vad_core.study.protocol import (  # noqa: E402
    markdown_summary,
    protocol_a,
    records_frame,
    run_baseline,
    run_recipe,
    summarize,
)

PED2_GT = REPO.parent / "shared" / "data" / "ucsd_ped2" / "ped2.mat"
PED2_GROUPS = {
    "01-03": [f"testing/frames/{i:02d}" for i in (1, 2, 3)],
    "04-06": [f"testing/frames/{i:02d}" for i in (4, 5, 6)],
    "01-06": [f"testing/frames/{i:02d}" for i in range(1, 7)],
}
SEEDED = ("iforest", "gcl_ae", "gcl")
# Study-only variants of a preset (not offered to the pipeline): name -> (preset, recipe fields, TrainConfig fields).
# "folds" deploys the refit's K = 5 fold models, each out-of-fold for its own videos, instead of 5 seeds trained on
# every kept row. "*_vstop": early stopping on whole held-back videos (TrainConfig.stop_on), not random rows.
VARIANTS: dict[str, tuple[str, dict[str, object], dict[str, object]]] = {
    "folds": ("robust", {"name": "folds", "refit_folds": 5, "refit_seeds": 1}, {}),
    "robust_vstop": ("robust", {"name": "robust_vstop"}, {"stop_on": "videos"}),
    "single_vstop": ("single", {"name": "single_vstop"}, {"stop_on": "videos"}),
    # + training noise centred on the scoring sigma (P_mean = ln 8): the candidate with the lowest held-back-video
    # denoising error at sigma 8 in a label-free single-model screen on Ped2 (docs/results.md, issue 9)
    "robust_vstop_p8": ("robust", {"name": "robust_vstop_p8"}, {"stop_on": "videos", "P_mean": 2.0794415416798357}),
    # features standardized per dimension (FeatureScaler "per_dim") instead of one global scale: a shift in a
    # low-variance dimension then counts as much as one in a high-variance dimension (issue 9, the demo's gap)
    "robust_perdim": ("robust", {"name": "robust_perdim"}, {"scaler": "per_dim"}),
    # twice the refit seed ensemble (10 members): does the seed spread of the default (01-03: 95.4-97.3) average out?
    "robust_x10": ("robust", {"name": "robust_x10", "refit_seeds": 10}, {}),
    # the trimmed share from a BIC-checked 2-Gaussian mixture of the log screen scores instead of Otsu's cut, which
    # put 32-40% above it on every Ped2 and demo seed so that the 0.3 cap decided q (issue 9, item 2)
    "robust_mixture": ("robust", {"name": "robust_mixture", "trim_rule": "mixture"}, {}),
    # three screens (own fold assignments and seeds) averaged: the screen's seed drove 69-85% of robust's seed
    # spread on Ped2 (docs/data/issue9_seed_split.jsonl); does a steadier trim narrow it, and at what mean?
    "robust_screen3": ("robust", {"name": "robust_screen3", "screen_repeats": 3}, {}),
    # the network width chosen label-free: the screen fits 32-16-8, 64-32-16 and 128-64-32 and keeps the width whose
    # out-of-fold errors have the lowest median (issue 9, item 4: network size by out-of-fold loss)
    "robust_width": ("robust", {"name": "robust_width", "width_scales": (0.5, 1.0, 2.0)}, {}),
    # the same rule over a wider grid (up to 256-128-64): robust_width chose the grid's widest net on every demo seed
    "robust_width4": ("robust", {"name": "robust_width4", "width_scales": (0.5, 1.0, 2.0, 4.0)}, {}),
    # coarse to fine (issue 9, item 2: iterate fit -> score -> refit without the top q%): a second screen on the rows
    # the first kept re-scores every row out-of-fold before the trim, so that anomalies a screen model restored
    # because similar anomalies sat in its training folds stand out
    "robust_rounds2": ("robust", {"name": "robust_rounds2", "screen_rounds": 2}, {}),
    "robust_rounds3": ("robust", {"name": "robust_rounds3", "screen_rounds": 3}, {}),
}
BASELINE_KWARGS = {"knn": {"k": 5}, "pca": {"n_components": 16}, "iforest": {"n_estimators": 200}}  # pipeline's


def only_videos(data: StudyData, keep: set[str]) -> StudyData:
    """The same data restricted to the rows of `keep` videos."""
    mask = data.rows["video_id"].astype(str).isin(keep).to_numpy()
    return StudyData(
        name=data.name,
        rows=data.rows[mask],
        features=data.features[mask],
        n_frames={v: n for v, n in data.n_frames.items() if v in keep},
        ground_truth=data.ground_truth,
        evaluated=tuple(v for v in data.evaluated if v in keep),
        backbone=data.backbone,
    )


def load_ped2(folder: str, gt: str) -> StudyData:
    truth = read_ground_truth(gt, format="mat", video_ids="testing/frames/{}")
    data = load_study_data(LocalTableStore(folder), "", truth, "ped2")
    keep = {v for v in data.n_frames if v.startswith(("training/frames/", "testing/frames/"))}
    return only_videos(data, keep)


# A heavier contamination than the 22 videos (6 of 14 fitted videos anomalous, as 12 of 28 are in the full Ped2),
# the prototype's "P-heavy": a proxy for the full set, whose test videos 07-12 are not in ../shared/data
HEAVY_VIDEOS = {f"training/frames/{i:02d}" for i in range(1, 9)} | set(PED2_GROUPS["01-06"])


def load_ped2_heavy(folder: str, gt: str) -> StudyData:
    """Ped2 training 01-08 and test 01-06 only, scenario "ped2_heavy" (the same evaluation groups as Ped2)."""
    data = only_videos(load_ped2(folder, gt), HEAVY_VIDEOS)
    return replace(data, name="ped2_heavy")


def load_demo(folder: str, gt: str) -> StudyData:
    return load_study_data(LocalTableStore(folder), "", read_ground_truth(gt, format="csv"), "demo")


def done(out: Path) -> set[tuple[str, str, int]]:
    if not out.exists():
        return set()
    recs = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {(r["scenario"], r["recipe"], int(r["seed"])) for r in recs}


def append(out: Path, records: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as f:
        for r in records:
            f.write(json.dumps(r, default=float) + "\n")


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    datasets = []
    if args.ped2:
        datasets.append((load_ped2(args.ped2, args.ped2_ground_truth), PED2_GROUPS))
    if args.ped2_heavy:
        datasets.append((load_ped2_heavy(args.ped2_heavy, args.ped2_ground_truth), PED2_GROUPS))
    if args.demo:
        demo = load_demo(args.demo, args.demo_ground_truth)
        datasets.append((demo, {"test": list(demo.evaluated)}))
    seeds = [int(s) for s in args.seeds.split(",")]
    uptime = os.getloadavg()
    for data, groups in datasets:
        print(f"{data.name}: {len(data.rows)} rows x {data.features.shape[1]} dims, {len(data.n_frames)} videos")
        for seed in seeds:
            for name in filter(None, args.recipes.split(",")):
                if (data.name, name, seed) in done(out):
                    continue
                base, fields, train_fields = VARIANTS.get(name, (name, {}, {}))
                recipe, train = preset(base)
                recipe, train = replace(recipe, **fields), replace(train, **train_fields)
                rules = [r for r in args.sigma_rules.split(",") if r] if name == "robust" else []
                scales = [tuple(float(v) for v in g.split("+")) for g in args.sigma_scales.split(",") if g]
                recs = run_recipe(
                    data, recipe, train, seed, groups, extra_sigma_rules=rules,
                    extra_sigma_scales=scales if name == "robust" else [],
                )  # fmt: skip
                append(out, [{**r, "load": uptime} for r in recs])
                print(f"  {name} seed {seed}: " + ", ".join(f"{r['recipe']} {r['group']} {r['auc']:.1f}" for r in recs)
                      + f" (fit {recs[0]['fit_s']:.0f}s, score {recs[0]['score_s']:.0f}s)", flush=True)  # fmt: skip
            for name in filter(None, args.baselines.split(",")):
                label = f"baseline {name}"
                if (seed > seeds[0] and name not in SEEDED) or (data.name, label, seed) in done(out):
                    continue
                recs = run_baseline(data, name, seed, groups, **BASELINE_KWARGS.get(name, {}))
                append(out, [{**r, "load": uptime} for r in recs])
                print(f"  {label} seed {seed}: " + ", ".join(f"{r['group']} {r['auc']:.1f}" for r in recs), flush=True)


def frame_markdown(df: pd.DataFrame) -> str:
    def fmt(v: object) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    return markdown_table(list(df.columns), [[fmt(v) for v in row] for row in df.itertuples(index=False)])


def render(paths: list[str]) -> str:
    records = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    summary = summarize(records_frame(records))
    cols = [("ped2", "01-03"), ("ped2", "04-06"), ("ped2", "01-06"), ("demo", "test")]
    if any(r["scenario"] == "ped2_heavy" for r in records):
        cols += [("ped2_heavy", "01-03"), ("ped2_heavy", "04-06")]
    parts = [
        "### Recipes and baselines (frame ROC AUC %, mean (min-max) over seeds)",
        "",
        markdown_summary(summary, cols),
    ]
    try:
        a = protocol_a(summary)
        parts += ["", "### Protocol (a)", "", frame_markdown(a)]
    except Exception as exc:  # noqa: BLE001  (a partial result file has no protocol yet)
        parts += ["", f"(protocol (a) not available: {exc})"]
    cost = summary[(summary["scenario"] == "ped2") & (summary["group"] == "01-06")][
        ["recipe", "n_models", "fit_s", "score_s"]
    ]
    parts += ["", "### Cost on the 22 Ped2 videos (seconds, mean over seeds)", "", frame_markdown(cost)]
    return "\n".join(parts)


TRIM_RECIPE = re.compile(r"^K5 screen ([0-9.]+) -> K1 \(sigma=8\)$")  # the research's fixed-share screen runs
CURVE_GROUPS = [
    ("ped2", "01-03"),
    ("ped2", "04-06"),
    ("demo", "test"),
    ("ped2_heavy", "01-03"),
    ("ped2_heavy", "04-06"),
]


def trim_curve(paths: list[str], png: str) -> str:
    """The trimmed refit's share q against frame AUC (mean over seeds): a Markdown table and a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]
    summary = summarize(records_frame(records))
    base = summary[summary["recipe"] == "K1 (today) (sigma=8)"]
    rows: list[tuple[str, dict[float, float]]] = []
    fig = plt.figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot(111)
    for scenario, group in CURVE_GROUPS:
        found = [(0.0, base[(base["scenario"] == scenario) & (base["group"] == group)]["mean"])]
        for recipe in summary["recipe"].unique():
            m = TRIM_RECIPE.match(recipe)
            if m:
                own = summary[(summary["recipe"] == recipe) & (summary["scenario"] == scenario)]
                found.append((float(m.group(1)), own[own["group"] == group]["mean"]))
        pts = sorted((q, float(v.iloc[0])) for q, v in found if len(v))
        if pts:
            ax.plot([q for q, _ in pts], [a for _, a in pts], marker="o", label=f"{scenario} {group}")
            rows.append((f"{scenario} {group}", dict(pts)))
    ax.set_xlabel("share q of fitted rows dropped before the refit (q = 0: no screen)")
    ax.set_ylabel("frame ROC AUC (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    qs = sorted({q for _, pts in rows for q in pts})
    body = [[name] + [f"{pts[q]:.1f}" if q in pts else "-" for q in qs] for name, pts in rows]
    return markdown_table(["fitted rows, AUC on"] + [f"q = {q:g}" for q in qs], body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ped2", help="folder of the Ped2 clip-features tables")
    ap.add_argument("--ped2-ground-truth", default=str(PED2_GT))
    ap.add_argument(
        "--ped2-heavy", help="folder of the Ped2 tables: fit training 01-08 + test 01-06 only (scenario ped2_heavy)"
    )
    ap.add_argument("--demo", help="folder of the demo clip-features tables")
    ap.add_argument("--demo-ground-truth", help="the demo's ground_truth.csv")
    ap.add_argument("--recipes", default="robust,single", help="presets (robust, single, paper) or variants (folds)")
    ap.add_argument("--baselines", default="knn,pca,iforest,gcl_ae,gcl")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sigma-rules", default="", help="robust only: also score at these label-free rules (videos)")
    ap.add_argument(
        "--sigma-scales", default="",
        help="robust only: also score with these ScoreConfig.sigma_scales around the chosen sigma, e.g. 0.5+1,0.5",
    )  # fmt: skip
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    ap.add_argument("--out", default=str(REPO / "vad_home" / "detector_study.jsonl"))
    ap.add_argument("--render", nargs="*", help="print the tables of these JSON-lines files and exit")
    ap.add_argument("--trim-curve", help="with --render: write the share-q curve PNG here and print its table")
    args = ap.parse_args(argv)
    if args.render is not None and args.trim_curve:
        print(trim_curve(args.render, args.trim_curve))
        return 0
    if args.render is not None:
        print(render(args.render or [args.out]))
        return 0
    if args.demo and not args.demo_ground_truth:
        ap.error("--demo needs --demo-ground-truth")
    run(args)
    print(render([args.out]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
