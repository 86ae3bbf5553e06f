"""Synthetic demo footage: a seeded surveillance scene with pedestrians and planted anomalies."""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.synthetic.demo import (
        ANOMALY_KINDS,
        GENERATOR_VERSION,
        DemoConfig,
        DemoFootage,
        anomaly_mask,
        anomaly_pixel_mask,
        generate_demo_footage,
        plan_video,
        render_video,
        visible_fraction,
        write_mp4,
    )

__all__ = [
    "ANOMALY_KINDS",
    "GENERATOR_VERSION",
    "DemoConfig",
    "DemoFootage",
    "anomaly_mask",
    "anomaly_pixel_mask",
    "generate_demo_footage",
    "plan_video",
    "render_video",
    "visible_fraction",
    "write_mp4",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
