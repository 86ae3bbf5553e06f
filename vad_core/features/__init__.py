"""Features: clip-feature tables from footage (a backbone over each (clip, region)) or from precomputed arrays.

backbone = load_backbone("i3d")
results = extract_all(manifest, backbone, ClipConfig(), LocalTableStore("out"), prefix="features",
                      regions=RegionConfig(backbone_pass="frame"))
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.features.backbones import Backbone, PixelStatsBackbone, backbone_names, load_backbone
    from vad_core.features.extract import extract_all, extract_features, video_row
    from vad_core.features.inventory import FeatureInventory, StaleTable, feature_inventory
    from vad_core.features.precomputed import import_precomputed, load_feature_array, video_id_from_name
    from vad_core.features.regions import RegionConfig, RegionLayout, region_layout
    from vad_core.io.feature_tables import FeatureResult, feature_key, results_frame

__all__ = [
    "Backbone",
    "FeatureInventory",
    "FeatureResult",
    "PixelStatsBackbone",
    "RegionConfig",
    "RegionLayout",
    "StaleTable",
    "backbone_names",
    "extract_all",
    "extract_features",
    "feature_inventory",
    "feature_key",
    "import_precomputed",
    "load_backbone",
    "load_feature_array",
    "region_layout",
    "results_frame",
    "video_id_from_name",
    "video_row",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
