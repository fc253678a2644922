"""Goal file contract: round trip, atomic writes, and clear errors for bad files."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import numpy as np
import pytest

from genreward_jax import goals
from genreward_jax.goals import GoalFileError, check_goal_matches, load_goal, save_goal


@pytest.fixture
def goal(file_goal) -> goals.GoalFile:
    return load_goal(file_goal["goal"])


def _rewrite(src: str, dst: str, **changes) -> None:
    """Copies an npz, replacing (value) or dropping (None) arrays, bypassing validation."""
    with np.load(src) as archive:
        arrays = {k: archive[k] for k in archive.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(dst, **arrays)


def test_round_trip_keeps_every_field(goal, tmp_path):
    path = tmp_path / "copy.npz"
    save_goal(path, goal)
    again = load_goal(path)
    for field in dataclasses.fields(goals.GoalFile):
        a, b = getattr(goal, field.name), getattr(again, field.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), field.name
        else:
            assert a == b, field.name
    assert sorted(os.listdir(tmp_path)) == ["copy.npz"]  # no temp files left behind


def test_schema_shapes_and_dtypes(goal):
    n, s = goal.frames.shape[0], goal.resolution
    assert goal.frames.dtype == np.uint8 and goal.frames.shape == (n, s, s, 3)
    assert goal.frame_indices.dtype == np.int64 and goal.frame_indices.shape == (17,)
    assert goal.latent_mean.dtype == np.float32 and goal.latent_mean.shape[0] == 5  # 17 -> 5
    assert goal.latent_mean.shape[1:3] == (s // 8, s // 8)
    assert goal.clip_scores.shape == (n,) and goal.clip_scores_per_prompt.shape == (2, n)
    assert np.array_equal(goal.keyframe, goal.frames[goal.keyframe_index])
    assert goal.keyframe_feature.dtype == np.float32 and goal.keyframe_feature.ndim == 1
    prov = goal.provenance
    assert prov["source"] == "file" and prov["sampling"] == goals.SAMPLING_NAME
    assert len(prov["vae"]["hash"]) == 64 and len(prov["dinov3"]["hash"]) == 64


def test_uniform_indices_cover_both_ends_and_refuse_too_few():
    idx = goals.uniform_indices(128, 16)
    assert idx[0] == 0 and idx[-1] == 127 and len(np.unique(idx)) == 16
    assert np.array_equal(goals.uniform_indices(49, 17), np.arange(0, 49, 3))
    with pytest.raises(ValueError, match="cannot sample 17 distinct frames from 10"):
        goals.uniform_indices(10, 17)


def test_failed_save_leaves_old_file_intact(goal, tmp_path):
    path = tmp_path / "goal.npz"
    save_goal(path, goal)
    before = path.read_bytes()
    bad = dataclasses.replace(goal, keyframe_index=(goal.keyframe_index + 1) % goal.frames.shape[0])
    with pytest.raises(GoalFileError, match="not argmax"):
        save_goal(path, bad)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["goal.npz"]


def test_missing_file(tmp_path):
    with pytest.raises(GoalFileError, match="no such goal file"):
        load_goal(tmp_path / "absent.npz")


def test_truncated_file(file_goal, tmp_path):
    data = open(file_goal["goal"], "rb").read()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(GoalFileError, match="truncated or corrupt"):
        load_goal(path)


def test_corrupted_bytes(file_goal, tmp_path):
    data = bytearray(open(file_goal["goal"], "rb").read())
    with zipfile.ZipFile(file_goal["goal"]) as zf:
        info = zf.getinfo("frames.npy")
    middle = info.header_offset + 64 + info.compress_size // 2  # inside the compressed frames
    data[middle : middle + 16] = bytes(16)
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(GoalFileError, match="truncated or corrupt"):
        load_goal(path)


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(GoalFileError, match="truncated or corrupt"):
        load_goal(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"latent_mean": None}, "missing key\\(s\\) latent_mean"),
        ({"schema_version": np.int64(0)}, "schema version 0 does not match"),
        ({"frames": "FRAMES_AS_FLOAT"}, "'frames' has dtype float32, expected uint8"),
        ({"clip_scores": "SHORT_SCORES"}, "'clip_scores' has shape"),
        ({"frame_indices": "BAD_INDICES"}, "'frame_indices' must be"),
        ({"provenance": np.asarray("{not json")}, "'provenance' is not valid JSON"),
        ({"provenance": "NO_VAE_HASH"}, "'provenance' lacks vae"),
        ({"provenance": "WRONG_RESOLUTION"}, "provenance 'resolution' is 32"),
        ({"latent_mean": "NAN_LATENT"}, "'latent_mean' contains NaN"),
    ],
)
def test_bad_contents_are_named(file_goal, goal, tmp_path, changes, message):
    prov = dict(goal.provenance)
    specials = {
        "FRAMES_AS_FLOAT": goal.frames.astype(np.float32),
        "SHORT_SCORES": goal.clip_scores[:-1],
        "BAD_INDICES": goal.frame_indices[::-1].copy(),
        "NAN_LATENT": np.full_like(goal.latent_mean, np.nan),
        "NO_VAE_HASH": np.asarray(json.dumps({k: v for k, v in prov.items() if k != "vae"})),
        "WRONG_RESOLUTION": np.asarray(json.dumps({**prov, "resolution": 32})),
    }
    changes = {k: specials.get(v, v) if isinstance(v, str) else v for k, v in changes.items()}
    path = tmp_path / "bad.npz"
    _rewrite(file_goal["goal"], str(path), **changes)
    with pytest.raises(GoalFileError, match=message) as info:
        load_goal(path)
    assert str(path) in str(info.value)


def test_mismatch_with_online_stage_is_refused(goal):
    check_goal_matches(
        goal,
        resolution=goal.resolution,
        num_sampled_frames=17,
        vae_hash=goal.provenance["vae"]["hash"],
    )
    with pytest.raises(GoalFileError, match="resolution: goal has 64, online stage uses 480"):
        check_goal_matches(goal, resolution=480)
    with pytest.raises(GoalFileError, match="vae weights hash"):
        check_goal_matches(goal, vae_hash="0" * 64, num_sampled_frames=17)
    with pytest.raises(
        GoalFileError, match="num_sampled_frames: goal has 17, online stage uses 16"
    ):
        check_goal_matches(goal, num_sampled_frames=16)


def test_encoder_folders_follow_a_moved_goal(file_goal, tmp_path):
    goal = load_goal(file_goal["goal"])
    assert goals.encoder_folder(file_goal["goal"], goal, "vae") == file_goal["vae"]
    # A goal folder copied elsewhere with its encoders/: the relative path wins.
    moved = tmp_path / "moved"
    (moved / "encoders" / "vae").mkdir(parents=True)
    entry = dict(goal.provenance["vae"], path_from_goal="encoders/vae")
    relocated = dataclasses.replace(goal, provenance={**goal.provenance, "vae": entry})
    assert goals.encoder_folder(moved / "goal.npz", relocated, "vae") == str(
        moved / "encoders" / "vae"
    )
    # Without the copy, the absolute path recorded at write time is used.
    assert goals.encoder_folder(tmp_path / "goal.npz", relocated, "vae") == file_goal["vae"]
    lost = dict(entry, path="/nowhere")
    bad = dataclasses.replace(goal, provenance={**goal.provenance, "vae": lost})
    with pytest.raises(GoalFileError, match="vae weights it was encoded with"):
        goals.encoder_folder(tmp_path / "goal.npz", bad, "vae")
