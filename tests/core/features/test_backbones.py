"""Backbone registry, r3d_18 and 3D-ResNeXt-101 architectures, input handling, compile fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vad_core.errors import VADInputError
from vad_core.features.backbones import Backbone, load_backbone
from vad_core.features.backbones.common import as_clips, resize_clips
from vad_core.features.backbones.r3d import KINETICS_MEAN, KINETICS_STD, R3D18
from vad_core.features.backbones.resnext import ResNeXt3D
from vad_core.io.hashing import sha256_file


def _clips(b: int, t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(b, t, h, w, 3), dtype=np.uint8)


def test_unknown_backbone_and_random_i3d_are_refused() -> None:
    with pytest.raises(VADInputError, match="unknown"):
        load_backbone("vgg")
    with pytest.raises(VADInputError, match="random"):
        load_backbone("i3d", weights="random")


def test_r3d18_matches_torchvision_layout() -> None:
    net = R3D18()
    # torchvision's R3D_18_Weights.KINETICS400_V1 metadata: num_params 33371472
    assert sum(p.numel() for p in net.parameters()) == 33_371_472
    keys = set(net.state_dict())
    for key in (
        "stem.0.weight",
        "stem.1.running_var",
        "layer1.0.conv1.0.weight",
        "layer1.0.conv2.1.bias",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.num_batches_tracked",
        "layer4.1.conv2.0.weight",
        "fc.weight",
        "fc.bias",
    ):
        assert key in keys
    assert "layer1.0.downsample.0.weight" not in keys  # 64 -> 64, stride 1: identity shortcut
    assert net.stem[0].weight.shape == (64, 3, 3, 7, 7)


def test_r3d18_without_weights_explains_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(VADInputError) as err:
        load_backbone("r3d_18", device="cpu")
    msg = str(err.value)
    assert "r3d_18-b3b3357e.pth" in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    with pytest.raises(VADInputError, match="not found"):
        load_backbone("r3d_18", weights=tmp_path / "nope.pth")


def test_r3d18_loads_torchvision_style_file_from_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    source = R3D18().eval()
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(source.state_dict(), hub / "r3d_18-b3b3357e.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    bb = load_backbone("r3d_18", device="cpu", compile=False)
    assert isinstance(bb, Backbone) and bb.dim == 512 and bb.input_size == (112, 112)
    assert bb.weights_sha256 == sha256_file(hub / "r3d_18-b3b3357e.pth")
    clips = _clips(2, 4, 56, 56)
    feats = bb.embed(clips, resize=False)
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 255.0
    x = (x - torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    with torch.no_grad():
        expected = source(x).numpy()
    assert feats.shape == (2, 512) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)


def test_r3d18_random_shapes_and_resize() -> None:
    bb = load_backbone("r3d_18", weights="random", compile=False)
    assert bb.weights_sha256 == "random" and bb.to("cpu") is bb
    assert bb.to_dict() == {
        "name": "r3d_18",
        "dim": 512,
        "weights_sha256": "random",
        "input_size": [112, 112],
        "precision": "fp32",
    }
    feats = bb.embed(_clips(2, 2, 96, 128))  # resized to 112x112 inside
    assert feats.shape == (2, 512) and np.isfinite(feats).all()


def test_resnext101_architecture_and_checkpoint_unwrapping(tmp_path: Path) -> None:
    with torch.device("meta"):
        net = ResNeXt3D()
    blocks = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    assert blocks == [3, 4, 23, 3]  # ResNeXt-101
    sd = net.state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["layer1.0.conv2.weight"].shape == (128, 4, 3, 3, 3)  # cardinality 32: 128 / 32 per group
    assert sd["layer4.2.conv3.weight"].shape == (2048, 1024, 1, 1, 1)
    assert sd["layer2.0.downsample.0.weight"].shape == (512, 256, 1, 1, 1)  # shortcut B: projection
    assert sd["fc.weight"].shape == (400, 2048)
    # Hara et al.'s 2017 files: {'state_dict': {'module.<key>': ...}, 'epoch', 'arch'}, from before
    # BatchNorm counted batches (no num_batches_tracked)
    gen = torch.Generator().manual_seed(0)
    weights = {
        f"module.{k}": (torch.rand(v.shape, generator=gen) * 0.05 if v.is_floating_point() else None)
        for k, v in sd.items()
        if not k.endswith("num_batches_tracked")
    }
    for k in weights:
        if k.endswith("running_var"):
            weights[k] = weights[k] + 1.0
    wrapped = tmp_path / "resnext-101-kinetics.pth"
    torch.save({"epoch": 1, "arch": "resnext-101", "state_dict": weights}, wrapped)
    bb = load_backbone("resnext101", weights=wrapped, compile=False)
    assert bb.dim == 2048 and bb.weights_sha256 == sha256_file(wrapped)
    feats = bb.embed(_clips(1, 4, 32, 32), resize=False)
    assert feats.shape == (1, 2048) and np.isfinite(feats).all()


def test_resnext101_needs_a_file_and_a_fitting_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAD_RESNEXT_WEIGHTS", raising=False)
    with pytest.raises(VADInputError, match="resnext-101-kinetics.pth"):
        load_backbone("resnext101")
    wrong = tmp_path / "r3d.pth"
    torch.save(R3D18().state_dict(), wrong)
    with pytest.raises(VADInputError, match="do not fit"):
        load_backbone("resnext101", weights=wrong)
    not_torch = tmp_path / "junk.pth"
    not_torch.write_bytes(b"not a checkpoint")
    with pytest.raises(VADInputError, match="weights_only"):
        load_backbone("resnext101", weights=not_torch)


def test_clip_checks_name_the_problem() -> None:
    with pytest.raises(VADInputError, match="uint8"):
        as_clips(np.zeros((1, 16, 8, 8, 3), dtype=np.float32))
    with pytest.raises(VADInputError, match=r"\(B, T, H, W, 3\)"):
        as_clips(np.zeros((16, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(VADInputError, match="empty"):
        as_clips(np.zeros((0, 16, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(VADInputError, match="expected a uint8 array"):
        as_clips([[1, 2, 3]])


def test_resize_matches_pil_bilinear() -> None:
    from PIL import Image

    clips = _clips(1, 2, 60, 90, seed=3)
    out = resize_clips(torch.from_numpy(clips), (40, 48), antialias=True).numpy()
    pil = np.stack([np.asarray(Image.fromarray(f).resize((48, 40), Image.BILINEAR)) for f in clips[0]])
    diff = np.abs(out[0].astype(int) - pil.astype(int))
    assert out.shape == (1, 2, 40, 48, 3) and out.dtype == np.uint8
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    same = torch.from_numpy(clips)
    assert resize_clips(same, (60, 90), antialias=True) is same


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_compile(fn, **kwargs):  # what a missing C++ compiler looks like: fails at first call
        def run(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("no working C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(0)
    bb = load_backbone("r3d_18", weights="random", compile=True, batch_size=4)
    eager = load_backbone("r3d_18", weights="random", compile=False)
    eager.network.load_state_dict(bb.network.state_dict())
    clips = _clips(3, 4, 48, 48)  # 3 of a compiled batch of 4: padded and sent to the compiled graph
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        got = bb.embed(clips, resize=False)
    np.testing.assert_allclose(got, eager.embed(clips, resize=False), rtol=1e-5, atol=1e-6)
    assert not bb.compiled


def test_compiled_graph_gets_full_batches_and_short_ones_run_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []

    def recording_compile(fn, **kwargs):  # the eager function, recording what the "graph" is fed
        def run(x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
            calls.append(tuple(x.shape))
            return fn(x, *args)

        return run

    monkeypatch.setattr(torch, "compile", recording_compile)
    torch.manual_seed(0)
    bb = load_backbone("r3d_18", weights="random", compile=True, batch_size=4)
    eager = load_backbone("r3d_18", weights="random", compile=False)
    eager.network.load_state_dict(bb.network.state_dict())
    clips = _clips(7, 4, 48, 48)  # a full batch of 4, then 3 padded to 4
    np.testing.assert_allclose(bb.embed(clips, resize=False), eager.embed(clips, resize=False), rtol=1e-5, atol=1e-6)
    assert calls == [(4, 4, 48, 48, 3), (4, 4, 48, 48, 3)]
    calls.clear()
    bb.embed(_clips(6, 4, 48, 48), resize=False)  # 4, then 2 (half a batch or less): eager, no padding
    assert calls == [(4, 4, 48, 48, 3)]


def test_bf16_precision_stays_close_to_fp32() -> None:
    torch.manual_seed(0)
    fp32 = load_backbone("r3d_18", weights="random", compile=False)
    bf16 = load_backbone("r3d_18", weights="random", compile=False, precision="bf16")
    bf16.network.load_state_dict(fp32.network.state_dict())
    clips = _clips(2, 4, 48, 48)
    a, b = fp32.embed(clips, resize=False), bf16.embed(clips, resize=False)
    assert b.dtype == np.float32
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert (cos > 0.99).all() and not np.array_equal(a, b)
    with pytest.raises(VADInputError, match="precision"):
        load_backbone("r3d_18", weights="random", precision="fp16")


def test_registry_builds_pixelstats_variants_from_their_own_names() -> None:
    default = load_backbone("pixelstats")
    assert (default.grid, default.step, default.dim) == (2, 4, 24)
    three = load_backbone("pixelstats-3")
    assert (three.grid, three.step, three.dim) == (3, 4, 54)
    # the name a table records loads the same backbone again
    again = load_backbone(load_backbone("pixelstats-3x2").name)
    assert (again.grid, again.step) == (3, 2)
    clips = _clips(2, 4, 32, 48)
    np.testing.assert_array_equal(again.embed(clips), load_backbone("pixelstats-3x2").embed(clips))
    with pytest.raises(VADInputError, match="pixelstats-<grid>"):
        load_backbone("pixelstats-big")
    with pytest.raises(VADInputError, match="takes no variant"):
        load_backbone("r3d_18-2", weights="random")


def test_registered_family_is_built_with_the_variant_and_options() -> None:
    from vad_core.features.backbones import registry

    seen = {}

    def factory(variant, options):
        seen.update(variant=variant, batch_size=options.batch_size)
        return load_backbone("pixelstats")

    registry.register_backbone("custom", factory)
    try:
        assert "custom" in registry.backbone_names()
        load_backbone("custom-v7", batch_size=3)
        assert seen == {"variant": "v7", "batch_size": 3}
    finally:
        registry._FACTORIES.pop("custom")
    with pytest.raises(VADInputError, match="no '-'"):
        registry.register_backbone("a-b", factory)


def test_compile_is_on_by_default_for_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from vad_core.features.backbones.common import resolve_compile

    monkeypatch.delenv("VAD_COMPILE", raising=False)
    assert resolve_compile(None, torch.device("cuda"))
    assert not resolve_compile(None, torch.device("cpu")) and not resolve_compile(None, torch.device("mps"))
    assert not resolve_compile(False, torch.device("cuda")) and resolve_compile(True, torch.device("cpu"))
    monkeypatch.setenv("VAD_COMPILE", "off")
    assert not resolve_compile(None, torch.device("cuda"))
    monkeypatch.setenv("VAD_COMPILE", "1")
    assert resolve_compile(None, torch.device("cpu"))
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)  # importing inductor takes ~40 s on 2 cores
    assert load_backbone("r3d_18", weights="random").compiled
    monkeypatch.setenv("VAD_COMPILE", "maybe")
    with pytest.raises(VADInputError, match="VAD_COMPILE"):
        resolve_compile(None, torch.device("cpu"))
    monkeypatch.delenv("VAD_COMPILE")
    assert not load_backbone("r3d_18", weights="random").compiled  # the CPU default
