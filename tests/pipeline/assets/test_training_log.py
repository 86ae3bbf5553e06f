"""The denoiser asset's training log: the lines it writes for `fit_detector`'s callback events."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tests.core._synthetic import TINY, mixture
from vad_core.diffusion.recipes import DetectorRecipe, screen_rows
from vad_pipeline.assets.training import fit_event_lines


def test_the_log_names_each_screen_round_and_the_chosen_network_once(one_torch_thread) -> None:
    data = mixture(n_clips=120)
    videos, tiles = data.rows["video_id"].to_numpy(), data.rows["tile"].to_numpy(np.int64)
    recipe = DetectorRecipe(screen_folds=2, n_draws=2, width_scales=(0.5, 1.0), screen_rounds=2)
    events: list[dict] = []
    screen = screen_rows(data.features, videos, replace(TINY, n_tiles=3), recipe, tiles, callback=events.append)
    lines = [line for e in events for line in fit_event_lines(e)]
    # 2 widths x 2 folds for round 1, then 2 folds for round 2: one line per model
    assert sum(line.startswith("screen model ") for line in lines) == 6
    trims = [line for line in lines if "dropping" in line]
    assert len(trims) == 2 and trims[0].startswith("screen round 1: dropping ")
    assert trims[1] == (
        f"screen round 2: dropping {int((~screen.keep).sum())} rows (share {screen.share:.3f}, label-free)"
    )
    network = [line for line in lines if "chosen by median out-of-fold error" in line]
    assert network == [
        f"screen: network {list(screen.hidden)} chosen by median out-of-fold error "
        f"(x0.5 {screen.width_errors['0.5']:.4f}, x1 {screen.width_errors['1']:.4f})"
    ]


def test_a_single_screen_says_screen_and_unknown_events_write_nothing() -> None:
    event = {"event": "stage", "stage": "screen", "trim_share": 0.25, "dropped": 12}
    assert fit_event_lines(event) == ["screen: dropping 12 rows (share 0.250, label-free)"]
    assert fit_event_lines({"event": "epoch"}) == [] and fit_event_lines({}) == []
