"""Dataset specs: a small YAML file naming the footage, its annotations and what is evaluated.

A spec looks like this (every relative path resolves against the spec's own folder, and
`${VAD_HOME}` expands to the storage root):

    name: ucsd_ped2
    footage_root: ../../shared/data/ucsd_ped2
    layout: frames                      # hint: "files", "frames" or "auto"
    include: ["training/frames/*", "testing/frames/*"]   # video-id globs (default: all)
    annotations:
      path: ../../shared/data/ucsd_ped2/ped2.mat
      format: mat                       # passed to vad_core.footage.ground_truth.read_ground_truth
      video_ids: "testing/frames/{}"    # ids for formats that number videos (list, mapping or template)
      pixel_masks: test_pixel_mask      # optional: ShanghaiTech-style <id>.npy pixel masks, ids renamed
      pixel_mask_ids: "testing/{}"      #   by this template (default: video_ids)
      unknown_ids: error                # annotated ids not in the manifest: fail ("error") or
                                        # report and leave them out ("ignore")
    train: all                          # video-id globs the models are fitted on (no labels)
    evaluate: ["testing/frames/*"]      # video-id globs that get frame labels and AUCs
    generator: synthetic                # optional: vad_core.synthetic fills an empty root
    seed: 0
    generator_options: {n_train: 6}     # optional: further generate_demo_footage arguments
    run_config:                         # optional: asset configs the demo runner, the sensor
      denoiser: {epochs: 30}            # and the schedule launch with ({asset: {field: value}})

`VAD_DATASET` selects a spec: a path to a YAML file, or the name of one in `datasets/`.
A key the spec format does not know (at the top, under `annotations` or `generator_options`)
is an error naming it and the nearest known key: a typo never silently drops a setting.
`run_config` is checked against the jobs' config schemas by `vad_pipeline.automation.jobs`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vad_core.errors import VADInputError

DATASETS_DIR = Path(__file__).resolve().parents[1] / "datasets"
DEFAULT_DATASET = "demo"
LAYOUTS = ("auto", "files", "frames")
SPEC_KEYS = (
    "name",
    "footage_root",
    "layout",
    "include",
    "annotations",
    "train",
    "evaluate",
    "generator",
    "seed",
    "generator_options",
    "run_config",
)
ANNOTATION_KEYS = ("path", "format", "video_ids", "pixel_masks", "pixel_mask_ids", "unknown_ids")
UNKNOWN_IDS = ("error", "ignore")


def unknown_key_message(where: str, key: object, known: Iterable[str]) -> str:
    """`<where>: unknown key 'layuot' (did you mean 'layout'?; known: ...)`, the nearest by difflib."""
    known = sorted(known)
    near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
    hint = f"did you mean {near[0]!r}?; " if near else ""
    return f"{where}: unknown key {key!r} ({hint}known: {', '.join(known)})"


def _check_keys(data: dict[str, Any], known: Iterable[str], where: str) -> None:
    known = tuple(known)
    for key in data:
        if key not in known:
            raise VADInputError(unknown_key_message(where, key, known))


def default_home() -> Path:
    """The storage root: `VAD_HOME`, else `./vad_home`, made absolute."""
    return Path(os.environ.get("VAD_HOME") or "vad_home").expanduser().resolve()


@dataclass(frozen=True)
class AnnotationSpec:
    """Where the ground truth lives and how `read_ground_truth` should parse it."""

    path: Path
    format: str | None = None
    video_ids: str | tuple[str, ...] | dict[str, str] | None = None
    pixel_masks: Path | None = None  # ShanghaiTech-style test_pixel_mask/ folder of <id>.npy files
    pixel_mask_ids: str | None = None  # template renaming the mask files' ids (default: video_ids)
    unknown_ids: str = "error"  # annotated ids not in the manifest: fail, or report and leave out ("ignore")

    def to_dict(self) -> dict[str, Any]:
        ids = list(self.video_ids) if isinstance(self.video_ids, tuple) else self.video_ids
        masks = str(self.pixel_masks) if self.pixel_masks else None
        return {
            "path": str(self.path),
            "format": self.format,
            "video_ids": ids,
            "pixel_masks": masks,
            "pixel_mask_ids": self.pixel_mask_ids,
            "unknown_ids": self.unknown_ids,
        }

    def mask_ids(self) -> str | tuple[str, ...] | dict[str, str] | None:
        """How the pixel-mask files' ids become video ids."""
        return self.pixel_mask_ids if self.pixel_mask_ids is not None else self.video_ids


@dataclass(frozen=True)
class DatasetSpec:
    """A resolved dataset spec: absolute paths, glob lists (`("*",)` = every video)."""

    name: str
    footage_root: Path
    spec_path: Path | None = None
    layout: str = "auto"
    include: tuple[str, ...] = ("*",)
    annotations: AnnotationSpec | None = None
    train: tuple[str, ...] = ("*",)
    evaluate: tuple[str, ...] = ("*",)
    generator: str | None = None
    seed: int = 0
    generator_options: dict[str, Any] = field(default_factory=dict)
    run_config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["footage_root"] = str(self.footage_root)
        d["spec_path"] = str(self.spec_path) if self.spec_path else None
        d["annotations"] = self.annotations.to_dict() if self.annotations else None
        return d

    def includes(self, video_id: str) -> bool:
        """Whether the spec keeps `video_id` at all (the `include` globs)."""
        return _matches(video_id, self.include)

    def keeps(self, video_id: str, kind: str) -> bool:
        """Whether a discovered video belongs to the dataset: `include` globs and the layout hint
        (`files` keeps video files only, `frames` frame folders only)."""
        layout_ok = self.layout == "auto" or (self.layout == "files") == (kind == "file")
        return layout_ok and self.includes(video_id)

    def may_hold(self, folder: str) -> bool:
        """Whether videos the `include` globs keep could lie under `folder` (a path under the root):
        an unreadable folder there is reported, one elsewhere is not the dataset's business."""
        if self.includes(folder):
            return True
        for pattern in self.include:
            literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
            if literal.startswith(folder.rstrip("/") + "/") or folder.startswith(literal):
                return True
        return False

    def is_train(self, video_id: str) -> bool:
        return _matches(video_id, self.train)

    def is_evaluated(self, video_id: str) -> bool:
        return _matches(video_id, self.evaluate)


def _matches(video_id: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(video_id, p) for p in patterns)


def _globs(value: Any, key: str, source: Path | str) -> tuple[str, ...]:
    if value is None or value == "all":
        return ("*",)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise VADInputError(f"{source}: '{key}' must be 'all', a video-id glob or a non-empty list of globs, got {value!r}")


def _resolve_path(value: Any, key: str, base: Path, home: Path, source: Path | str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise VADInputError(f"{source}: '{key}' must be a non-empty path string, got {value!r}")
    text = value.replace("${VAD_HOME}", str(home)).replace("$VAD_HOME", str(home))
    path = Path(os.path.expandvars(os.path.expanduser(text)))
    return (path if path.is_absolute() else base / path).resolve()


def parse_spec(data: Any, base: Path, home: Path | None = None, source: Path | str = "<spec>") -> DatasetSpec:
    """Build a `DatasetSpec` from parsed YAML; relative paths resolve against `base`."""
    home = home or default_home()
    if not isinstance(data, dict):
        raise VADInputError(f"{source}: a dataset spec must be a YAML mapping, got {type(data).__name__}")
    _check_keys(data, SPEC_KEYS, str(source))
    if "footage_root" not in data:
        raise VADInputError(f"{source}: missing required key 'footage_root'")
    name = data.get("name") or (Path(source).stem if isinstance(source, (str, Path)) else "dataset")
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise VADInputError(f"{source}: 'name' must be letters, digits, '-' or '_', got {name!r}")
    layout = data.get("layout", "auto")
    if layout not in LAYOUTS:
        raise VADInputError(f"{source}: 'layout' must be one of {LAYOUTS}, got {layout!r}")
    annotations = None
    ann = data.get("annotations")
    if ann is not None:
        if isinstance(ann, str):
            ann = {"path": ann}
        if not isinstance(ann, dict) or "path" not in ann:
            raise VADInputError(f"{source}: 'annotations' must be a path or a mapping with 'path', got {ann!r}")
        _check_keys(ann, ANNOTATION_KEYS, f"{source}: annotations")
        from vad_core.footage.ground_truth import FORMATS

        if ann.get("format") is not None and ann["format"] not in FORMATS:
            near = difflib.get_close_matches(str(ann["format"]), FORMATS, n=1, cutoff=0.4)
            raise VADInputError(
                f"{source}: annotations.format {ann['format']!r} is not a known format"
                f"{f' (did you mean {near[0]!r}?)' if near else ''}; known: {', '.join(FORMATS)}"
            )
        if ann.get("unknown_ids", "error") not in UNKNOWN_IDS:
            raise VADInputError(
                f"{source}: annotations.unknown_ids must be one of {UNKNOWN_IDS}, got {ann['unknown_ids']!r}"
            )
        ids = ann.get("video_ids")
        ok = (
            ids is None
            or isinstance(ids, str)
            or (isinstance(ids, list) and all(isinstance(v, str) for v in ids))
            or (isinstance(ids, dict) and all(isinstance(v, str) for v in ids.values()))
        )
        if not ok:
            raise VADInputError(
                f"{source}: 'annotations.video_ids' must be a template string, a list of "
                f"strings or a mapping of ids, got {ids!r}"
            )
        if isinstance(ids, list):
            ids = tuple(ids)
        elif isinstance(ids, dict):
            ids = {str(k): v for k, v in ids.items()}
        masks, mask_ids = ann.get("pixel_masks"), ann.get("pixel_mask_ids")
        if mask_ids is not None and not isinstance(mask_ids, str):
            raise VADInputError(f"{source}: 'annotations.pixel_mask_ids' must be a template string, got {mask_ids!r}")
        annotations = AnnotationSpec(
            path=_resolve_path(ann["path"], "annotations.path", base, home, source),
            format=ann.get("format"),
            video_ids=ids or None,
            pixel_masks=_resolve_path(masks, "annotations.pixel_masks", base, home, source) if masks else None,
            pixel_mask_ids=mask_ids,
            unknown_ids=ann.get("unknown_ids", "error"),
        )
    generator = data.get("generator")
    if generator not in (None, "synthetic"):
        raise VADInputError(f"{source}: 'generator' must be 'synthetic' or absent, got {generator!r}")
    seed = data.get("seed", 0)
    if not isinstance(seed, int):
        raise VADInputError(f"{source}: 'seed' must be an integer, got {seed!r}")
    run_config = data.get("run_config") or {}
    if not isinstance(run_config, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in run_config.items()
    ):
        raise VADInputError(
            f"{source}: 'run_config' must map asset names to mappings of config fields, got {run_config!r}"
        )
    options = data.get("generator_options") or {}
    if not isinstance(options, dict):
        raise VADInputError(f"{source}: 'generator_options' must be a mapping, got {options!r}")
    if options:
        from vad_core.synthetic.demo import DemoConfig

        _check_keys(
            options,
            [f.name for f in dataclasses.fields(DemoConfig) if f.name != "seed"],
            f"{source}: generator_options",
        )
    return DatasetSpec(
        name=name,
        footage_root=_resolve_path(data["footage_root"], "footage_root", base, home, source),
        spec_path=Path(source).resolve() if isinstance(source, Path) else None,
        layout=layout,
        include=_globs(data.get("include"), "include", source),
        annotations=annotations,
        train=_globs(data.get("train"), "train", source),
        evaluate=_globs(data.get("evaluate"), "evaluate", source),
        generator=generator,
        seed=seed,
        generator_options=dict(options),
        run_config={k: dict(v) for k, v in run_config.items()},
    )


def spec_file(selector: str | os.PathLike | None = None) -> Path:
    """The YAML file a selector names: a path, or a spec name in `datasets/`.

    `None` reads `VAD_DATASET`, then falls back to the demo spec.
    """
    selector = selector if selector not in (None, "") else (os.environ.get("VAD_DATASET") or DEFAULT_DATASET)
    text = str(selector)
    candidate = Path(text).expanduser()
    if candidate.suffix in (".yaml", ".yml") or os.sep in text or "/" in text:
        if not candidate.is_file():
            raise VADInputError(f"dataset spec {text!r}: file not found")
        return candidate.resolve()
    named = DATASETS_DIR / f"{text}.yaml"
    if not named.is_file():
        known = sorted(p.stem for p in DATASETS_DIR.glob("*.yaml"))
        raise VADInputError(f"dataset {text!r}: no spec {named} (known: {known}); give a path to a YAML spec")
    return named


def load_spec(selector: str | os.PathLike | None = None, home: Path | None = None) -> DatasetSpec:
    """Load and resolve a dataset spec (see `spec_file` for how the selector is read)."""
    path = spec_file(selector)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise VADInputError(f"dataset spec {path}: not valid YAML ({exc})") from None
    return parse_spec(data, base=path.parent, home=home, source=path)


def ensure_footage(spec: DatasetSpec) -> bool:
    """Generate a spec's footage when it has a generator and its root holds no video yet (or
    footage an older version of the generator wrote).

    Returns True when footage was generated. Specs without a generator are left alone.
    """
    if spec.generator != "synthetic":
        return False
    from vad_core.footage import discover_videos
    from vad_core.synthetic import GENERATOR_VERSION, generate_demo_footage

    record = spec.footage_root / "demo_footage.json"
    if spec.footage_root.is_dir() and discover_videos(spec.footage_root):
        try:  # footage an older generator wrote is brought up to date (same videos, new files)
            current = json.loads(record.read_text())["params"]["generator_version"] == GENERATOR_VERSION
        except (OSError, ValueError, KeyError, TypeError):
            current = True  # not the generator's folder: left alone
        if current:
            return False
    generate_demo_footage(spec.footage_root, seed=spec.seed, **spec.generator_options)
    return True


__all__ = [
    "ANNOTATION_KEYS",
    "DATASETS_DIR",
    "DEFAULT_DATASET",
    "LAYOUTS",
    "SPEC_KEYS",
    "UNKNOWN_IDS",
    "AnnotationSpec",
    "DatasetSpec",
    "default_home",
    "ensure_footage",
    "load_spec",
    "parse_spec",
    "spec_file",
    "unknown_key_message",
]
