"""Import of per-video .npy feature arrays into clip-features tables."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from vad_core.errors import VADInputError
from vad_core.features.precomputed import import_precomputed, load_feature_array, video_id_from_name
from vad_core.io.feature_tables import feature_key, read_clip_features
from vad_core.io.store import LocalTableStore
from vad_core.io.tables import feature_matrix


def test_video_id_from_name() -> None:
    assert video_id_from_name("Abuse001_x264_i3d") == "Abuse001_x264"
    assert video_id_from_name("01_0014_i3d") == "01_0014"
    assert video_id_from_name("01_0014") == "01_0014"
    assert video_id_from_name("_i3d") == "_i3d"  # nothing would be left: keep the name
    assert video_id_from_name("clip_rgb", suffixes=("_i3d",)) == "clip_rgb"


def test_import_two_d_and_ten_crop(tmp_path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 8)).astype(np.float32)
    b = rng.normal(size=(3, 10, 8)).astype(np.float32)
    np.save(src / "Abuse001_x264_i3d.npy", a)
    np.save(src / "01_0014_i3d.npy", b)
    events: list[dict] = []
    results = import_precomputed(
        src, LocalTableStore(tmp_path / "out"), clip_len=16, name="ucf_i3d", callback=events.append
    )
    assert [r.video_id for r in results] == ["01_0014", "Abuse001_x264"]
    assert all(r.ok and not r.skipped for r in results)
    assert [e["videos_done"] for e in events] == [1, 2] and events[-1]["videos_total"] == 2

    df, meta = read_clip_features(LocalTableStore(tmp_path / "out"), feature_key("", "Abuse001_x264"))
    assert len(df) == 5
    assert df["clip"].tolist() == [0, 1, 2, 3, 4]
    assert df["start_frame"].tolist() == [0, 16, 32, 48, 64]
    assert df["end_frame"].tolist() == [16, 32, 48, 64, 80]
    assert (df["tile"] == 0).all()
    assert (df[["x", "y", "w", "h"]].to_numpy() == -1).all()
    np.testing.assert_array_equal(feature_matrix(df), a)
    assert meta["backbone"] == "precomputed:ucf_i3d"
    assert meta["dim"] == "8" and meta["clip_len"] == "16" and meta["tiling"] == "none"
    assert meta["crops_averaged"] == "1"

    df, meta = read_clip_features(LocalTableStore(tmp_path / "out"), feature_key("", "01_0014"))
    assert len(df) == 3 and meta["crops_averaged"] == "10"
    np.testing.assert_allclose(feature_matrix(df), b.astype(np.float64).mean(axis=1), rtol=0, atol=1e-6)


def test_per_crop_files_are_averaged(tmp_path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    crops = [np.full((4, 3), k, np.float32) for k in range(3)]  # crop k holds the constant k
    for k, c in enumerate(crops):
        np.save(src / f"v1__{k}.npy", c)
    (result,) = import_precomputed(src, LocalTableStore(tmp_path / "out"), clip_len=8)
    assert result.ok and result.n_clips == 4
    df, _ = read_clip_features(LocalTableStore(tmp_path / "out"), result.key)
    np.testing.assert_array_equal(feature_matrix(df), np.full((4, 3), 1.0, np.float32))
    assert df["end_frame"].tolist() == [8, 16, 24, 32]


def test_bad_files_reported_rest_imported(tmp_path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    np.save(src / "good.npy", np.ones((2, 4), np.float32))
    np.save(src / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(src / "one_d.npy", np.ones(7, np.float32))
    np.save(src / "nan.npy", np.array([[1.0, np.nan], [0.0, 0.0]], np.float32))
    (src / "trunc.npy").write_bytes((src / "good.npy").read_bytes()[:60])
    (src / "pickle.npy").write_bytes(pickle.dumps([1, 2, 3]))
    np.savez(src / "zipped.npz", a=np.ones(3))
    (src / "zipped.npz").rename(src / "zipped.npy")
    np.save(src / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    results = {r.video_id: r for r in import_precomputed(src, LocalTableStore(tmp_path / "out"))}
    assert results["good"].ok and (tmp_path / "out" / results["good"].key).is_file()
    for vid in ("obj", "one_d", "nan", "trunc", "pickle", "zipped", "strings"):
        assert not results[vid].ok, vid
        assert f"{vid}.npy" in results[vid].error
        assert results[vid].key is None
        assert not (tmp_path / "out" / feature_key("", vid)).exists()
    assert "non-finite" in results["nan"].error
    assert "(T, D)" in results["one_d"].error
    assert "not a single array" in results["zipped"].error and "numeric" in results["strings"].error


def test_duplicate_ids_are_an_error(tmp_path) -> None:
    src = tmp_path / "feats"
    (src / "a").mkdir(parents=True)
    np.save(src / "v_i3d.npy", np.ones((2, 4), np.float32))
    np.save(src / "a" / "v.npy", np.ones((2, 4), np.float32))
    (result,) = import_precomputed(src, LocalTableStore(tmp_path / "out"))
    assert not result.ok and "several feature files" in result.error


def test_reimport_is_noop_and_change_reimports(tmp_path) -> None:
    src = tmp_path / "feats"
    src.mkdir()
    np.save(src / "v.npy", np.zeros((2, 4), np.float32))
    (first,) = import_precomputed(src, LocalTableStore(tmp_path / "out"))
    mtime = os.stat(tmp_path / "out" / first.key).st_mtime_ns
    (second,) = import_precomputed(src, LocalTableStore(tmp_path / "out"))
    assert second.skipped and second.n_rows == 2 and second.dim == 4
    assert os.stat(tmp_path / "out" / first.key).st_mtime_ns == mtime
    np.save(src / "v.npy", np.ones((3, 4), np.float32))
    (third,) = import_precomputed(src, LocalTableStore(tmp_path / "out"))
    assert not third.skipped and third.n_rows == 3
    df, _ = read_clip_features(LocalTableStore(tmp_path / "out"), third.key)
    np.testing.assert_array_equal(feature_matrix(df), np.ones((3, 4), np.float32))
    (fourth,) = import_precomputed(src, LocalTableStore(tmp_path / "out"), clip_len=8)  # new mapping: rewritten
    assert not fourth.skipped
    assert read_clip_features(LocalTableStore(tmp_path / "out"), fourth.key)[0]["end_frame"].tolist() == [8, 16, 24]


def test_load_feature_array_and_bad_folder(tmp_path) -> None:
    np.save(tmp_path / "x.npy", np.arange(12, dtype=np.int32).reshape(3, 4))
    arr, crops = load_feature_array(tmp_path / "x.npy")
    assert arr.dtype == np.float32 and crops == 1 and arr[2, 3] == 11.0
    with pytest.raises(VADInputError, match="no .npy files"):
        import_precomputed(_empty(tmp_path), LocalTableStore(tmp_path / "out"))
    with pytest.raises(VADInputError, match="does not exist"):
        import_precomputed(tmp_path / "missing", LocalTableStore(tmp_path / "out"))
    with pytest.raises(VADInputError, match="clip_len"):
        import_precomputed(tmp_path, LocalTableStore(tmp_path / "out"), clip_len=0)


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d
