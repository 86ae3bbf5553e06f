"""Diffusion: the EDM denoiser (network F, preconditioning D, loss), samplers, noise, training,
the trained denoiser and its checkpoints, and per-row reconstruction / denoising errors.

    result = fit(features, TrainConfig())              # diffusion.training
    scores = score_rows(result.denoiser, features)     # diffusion.reconstruction
    blob = checkpoint_bytes(result)                     # diffusion.denoiser

    fitted = fit_detector(features, videos, *preset("robust"), tiles=tiles)   # diffusion.recipes
    scores = fitted.detector.score_new(new_features, new_tiles)              # diffusion.detector
    blob = detector_bytes(fitted.detector); detector = load_detector(blob)
"""

from typing import TYPE_CHECKING

from vad_core._lazy import lazy_exports

if TYPE_CHECKING:
    from vad_core.diffusion.config import TrainConfig
    from vad_core.diffusion.denoiser import (
        CHECKPOINT_FORMAT,
        TrainedDenoiser,
        checkpoint_bytes,
        load_checkpoint,
        save_checkpoint,
    )
    from vad_core.diffusion.detector import DETECTOR_FORMAT, Detector, DetectorMember, detector_bytes, load_detector
    from vad_core.diffusion.folds import assign_folds, fit_members
    from vad_core.diffusion.label_free import choose_trim_share
    from vad_core.diffusion.network import DenoiserConfig, MLPDenoiser, film_silu
    from vad_core.diffusion.noise import mix64, row_noise
    from vad_core.diffusion.precond import EDMPrecond, edm_loss, edm_scalings, measure_sigma_data, row_mse
    from vad_core.diffusion.preprocessing import FeatureScaler
    from vad_core.diffusion.recipes import PRESETS, DetectorFit, DetectorRecipe, fit_detector, preset
    from vad_core.diffusion.reconstruction import SAMPLERS, SCORE_TYPES, ScoreConfig, score_rows, score_stream
    from vad_core.diffusion.sampling import (
        get_sigmas_karras,
        lms_coefficients,
        sample_euler,
        sample_heun,
        sample_lms,
        sigma_range,
    )
    from vad_core.diffusion.training import TrainResult, fit, trained_denoiser

__all__ = [
    "CHECKPOINT_FORMAT",
    "DETECTOR_FORMAT",
    "PRESETS",
    "SAMPLERS",
    "SCORE_TYPES",
    "DenoiserConfig",
    "Detector",
    "DetectorFit",
    "DetectorMember",
    "DetectorRecipe",
    "EDMPrecond",
    "FeatureScaler",
    "MLPDenoiser",
    "ScoreConfig",
    "TrainConfig",
    "TrainResult",
    "TrainedDenoiser",
    "assign_folds",
    "checkpoint_bytes",
    "choose_trim_share",
    "detector_bytes",
    "edm_loss",
    "edm_scalings",
    "film_silu",
    "fit",
    "fit_detector",
    "fit_members",
    "get_sigmas_karras",
    "lms_coefficients",
    "load_checkpoint",
    "load_detector",
    "measure_sigma_data",
    "mix64",
    "preset",
    "row_mse",
    "row_noise",
    "sample_euler",
    "sample_heun",
    "sample_lms",
    "save_checkpoint",
    "score_rows",
    "score_stream",
    "sigma_range",
    "trained_denoiser",
]

__getattr__, __dir__ = lazy_exports(__name__, __file__)
