"""Issue 9: where the `robust` default's seed spread comes from, the screen or the refit members.

    nice -n 10 .venv/bin/python scripts/seed_split_study.py --ped2 $VAD_HOME/ucsd_ped2/features \\
        --screen-seed 0 --refit-seeds 0,1,2 >> docs/data/issue9_seed_split.jsonl

The screen (fold assignment, screen models, trimmed rows) is fitted with seed a (`--screen-seed`), then the
refit members, the sigma rule and the scoring draws with each seed b of `--refit-seeds`, exactly as
`fit_detector` does for one seed (`screen_rows` with seed a, then `refit_detector` with seed b; a == b is
`robust`'s own fit and reproduces `detector_study.py`'s records).
One JSON line per (a, b): frame AUC on Ped2 01-03, 04-06, 01-06, the chosen sigma and the rows dropped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from detector_study import PED2_GROUPS, PED2_GT, load_ped2  # noqa: E402

from vad_core.diffusion.recipes import preset, refit_detector, screen_rows  # noqa: E402
from vad_core.scoring.rows import row_keys_for  # noqa: E402
from vad_core.study.protocol import group_auc, seeded  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ped2", required=True, help="folder of the Ped2 clip-features tables")
    ap.add_argument("--ped2-ground-truth", default=str(PED2_GT))
    ap.add_argument("--screen-seed", type=int, required=True)
    ap.add_argument("--refit-seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_ped2(args.ped2, args.ped2_ground_truth)
    recipe, train = preset("robust")
    x, tiles = data.features, data.tiles
    videos = data.rows["video_id"].astype(str).to_numpy()
    keys = row_keys_for(data.rows)
    n_tiles = int(tiles.max()) + 1
    a = args.screen_seed
    screen_recipe, screen_train = seeded(recipe, train, a, n_tiles)  # the offsets of run_recipe's seed a
    screen = screen_rows(x, videos, screen_train, screen_recipe, tiles=tiles, row_keys=keys)
    for b in (int(s) for s in args.refit_seeds.split(",")):
        rc, tc = seeded(recipe, train, b, n_tiles)
        fit = refit_detector(x, videos, tc, rc, screen, tiles=tiles, row_keys=keys)
        assert fit.fitted_scores is not None  # refit_detector always scores the fitted rows
        scores, sigma, keep = fit.fitted_scores, fit.detector.score_config.sigma, fit.keep
        record = {"screen_seed": a, "refit_seed": b, "sigma": sigma, "dropped": int((~keep).sum())}
        record |= {g: group_auc(data, scores, v) for g, v in PED2_GROUPS.items()}
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
