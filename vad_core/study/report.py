"""Render a study's results table: selections, the Table-2 style comparison, the label-free
summary and heatmaps (PNG bytes).

Works on `StudyResult.table` (or the Parquet table it was stored as), so a finished study can be
re-rendered without retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vad_core.evaluation.formatting import markdown_table
from vad_core.evaluation.plots import heatmap_png

_SETTING_COLS = ["setting_id", "P_mean", "P_std", "hidden", "scaler", "seed", "variant", "k"]


def method_label(method: str, score_type: str) -> str:
    """`diffusion-film` + `denoising` -> `diffusion (FiLM), denoising`; baselines keep their name."""
    if not method.startswith("diffusion"):
        return method
    emb = {"film": "FiLM", "concat": "concat [33]"}.get(method.split("-", 1)[1], method)
    score = {"reconstruction": "partial-diffusion reconstruction (paper)", "denoising": "one-step denoising"}
    return f"diffusion ({emb}), {score.get(score_type, score_type)}"


def selections(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (features, method, score type, selection): the label-free, oracle and oracle-paper rows."""
    out = []
    for flag, name in (
        ("label_free", "label-free"),
        ("oracle", "oracle (test labels)"),
        ("oracle_paper", "oracle paper protocol (test labels)"),
    ):
        rows = table[table[flag]].assign(selection=name)
        out.append(rows)
    sel = pd.concat(out, ignore_index=True)
    cols = [
        "features",
        "method",
        "score_type",
        "selection",
        "frame_auc",
        "frame_auc_smoothed",
        "paper_auc",
        "frame_ap",
    ] + [c for c in _SETTING_COLS if c in sel.columns]
    return (
        sel[cols].sort_values(["features", "method", "score_type", "selection"], kind="stable").reset_index(drop=True)
    )


def seed_spread(table: pd.DataFrame) -> pd.DataFrame:
    """Frame AUC of the label-free scoring variant across seeds, per (features, method, score type).

    Uses the label-free row's noise setting, width and variant for every seed trained there.
    """
    if "phase" not in table.columns:
        return pd.DataFrame()
    out = []
    for _, lf in table[table["label_free"] & table["method"].str.startswith("diffusion")].iterrows():
        same = table[
            (table["features"] == lf["features"])
            & (table["method"] == lf["method"])
            & (table["score_type"] == lf["score_type"])
            & (table["variant"] == lf["variant"])
            & (table["P_mean"] == lf["P_mean"])
            & (table["P_std"] == lf["P_std"])
            & (table["hidden"] == lf["hidden"])
            & (table["scaler"] == lf["scaler"])
            & (table["k"] == lf["k"])
        ]
        same = same.drop_duplicates("seed")
        if len(same) > 1:
            auc, sm = same["frame_auc"].to_numpy(), same["frame_auc_smoothed"].to_numpy()
            out.append(
                {
                    "features": lf["features"],
                    "method": lf["method"],
                    "score_type": lf["score_type"],
                    "variant": lf["variant"],
                    "seeds": len(same),
                    "frame_auc_mean": auc.mean(),
                    "frame_auc_min": auc.min(),
                    "frame_auc_max": auc.max(),
                    "frame_auc_smoothed_mean": float(np.nanmean(sm)) if np.isfinite(sm).any() else np.nan,
                    "paper_auc_mean": same["paper_auc"].mean(),
                }
            )
    return pd.DataFrame(out)


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def _pick(part: pd.DataFrame, selection: str, column: str) -> float:
    """`column` of the row chosen by `selection`, NaN when that selection has no row."""
    chosen = part["selection"] == selection
    return float(part.loc[chosen, column].iloc[0]) if chosen.any() else float("nan")


def comparison_markdown(table: pd.DataFrame) -> str:
    """The paper's Table 2 shape: method x features -> frame AUC (label-free, oracle) and paper-protocol AUC."""
    sel = selections(table)
    feats = list(dict.fromkeys(sel["features"]))
    header = ["method"] + [
        f"{f}: {c}"
        for f in feats
        for c in ("frame AUC label-free (smoothed)", "frame AUC oracle", "paper-protocol AUC label-free k / oracle")
    ]
    rows = []
    order = list(dict.fromkeys(zip(sel["method"], sel["score_type"], strict=True)))
    order.sort(key=lambda m: (not m[0].startswith("diffusion"), m[0], m[1]))
    for method, score_type in order:
        line = [method_label(method, score_type)]
        for f in feats:
            part = sel[(sel["features"] == f) & (sel["method"] == method) & (sel["score_type"] == score_type)]
            lf = _pick(part, "label-free", "frame_auc")
            line += [
                f"{_pct(lf)} ({_pct(_pick(part, 'label-free', 'frame_auc_smoothed'))})",
                _pct(_pick(part, "oracle (test labels)", "frame_auc")),
                f"{_pct(_pick(part, 'label-free', 'paper_auc'))} / "
                f"{_pct(_pick(part, 'oracle paper protocol (test labels)', 'paper_auc'))}",
            ]
        rows.append(line)
    return markdown_table(header, rows)


def study_heatmaps(
    table: pd.DataFrame, features: str | None = None, methods: Sequence[str] | None = None
) -> dict[str, bytes]:
    """The study's heatmaps for one feature set, per diffusion method:

    - reconstruction: frame AUC over (P_mean, P_std) at the best t, and over (t, P_mean) at the best P_std;
    - denoising: frame AUC over (sigma, P_mean) at the best P_std.
    "Best" = the oracle row (test labels); the label-free cell is outlined in red.
    Returns `{file name: PNG bytes}`, e.g. `i3d_ped2_film_recon_noise.png`.
    """
    t = table[table["method"].str.startswith("diffusion")]
    if "phase" in t.columns:
        t = t[t["phase"] == "grid"]
    features = features or str(t["features"].iloc[0])
    t = t[t["features"] == features].drop_duplicates(["setting_id", "variant"])
    tag = features.replace("/", "_")
    figures: dict[str, bytes] = {}
    for method in methods or sorted(t["method"].unique()):
        m = t[t["method"] == method]
        full = table[(table["features"] == features) & (table["method"] == method)]
        for st in m["score_type"].unique():
            ms = m[m["score_type"] == st]
            best = full[(full["score_type"] == st) & full["oracle"]]
            free = full[(full["score_type"] == st) & full["label_free"]]
            if best.empty:
                continue
            b = best.iloc[0]
            lf = free.iloc[0] if not free.empty else None
            name = method.split("-", 1)[1]
            if st == "reconstruction":
                at_t = ms[ms["start_step"] == b["start_step"]]
                figures[f"{tag}_{name}_recon_noise.png"] = heatmap_png(
                    at_t,
                    "P_std",
                    "P_mean",
                    f"{features}, {name}, reconstruction, t = {int(b['start_step'])} (oracle best t)",
                    mark=None if lf is None or lf["start_step"] != b["start_step"] else (lf["P_std"], lf["P_mean"]),
                )
                at_ps = ms[ms["P_std"] == b["P_std"]]
                figures[f"{tag}_{name}_recon_t.png"] = heatmap_png(
                    at_ps,
                    "start_step",
                    "P_mean",
                    f"{features}, {name}, reconstruction, P_std = {b['P_std']:g} (oracle best)",
                    mark=None if lf is None or lf["P_std"] != b["P_std"] else (lf["start_step"], lf["P_mean"]),
                )
            else:
                at_ps = ms[ms["P_std"] == b["P_std"]]
                figures[f"{tag}_{name}_denoise_sigma.png"] = heatmap_png(
                    at_ps,
                    "sigma",
                    "P_mean",
                    f"{features}, {name}, denoising, P_std = {b['P_std']:g} (oracle best)",
                    mark=None if lf is None or lf["P_std"] != b["P_std"] else (lf["sigma"], lf["P_mean"]),
                )
    return figures


def label_free_summary(table: Any) -> dict[str, Any]:
    """Per method group: the label-free setting and its AUCs beside the oracle's."""
    sel = selections(table)
    out: dict[str, Any] = {}
    for (feats, method, st), grp in sel.groupby(["features", "method", "score_type"], sort=False):
        entry: dict[str, Any] = {}
        for _, r in grp.iterrows():
            key = {
                "label-free": "label_free",
                "oracle (test labels)": "oracle",
                "oracle paper protocol (test labels)": "oracle_paper",
            }[r["selection"]]
            entry[key] = {
                c: (
                    None
                    if isinstance(r[c], float) and not np.isfinite(r[c])
                    else (r[c].item() if hasattr(r[c], "item") else r[c])
                )
                for c in r.index
                if c not in ("features", "method", "score_type", "selection")
            }
        out[f"{feats}|{method}|{st}"] = entry
    return out


__all__ = ["comparison_markdown", "label_free_summary", "method_label", "seed_spread", "selections", "study_heatmaps"]
