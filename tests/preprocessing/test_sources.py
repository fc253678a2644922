"""Each goal source, end to end to a goal file that loads and validates."""

from __future__ import annotations

import dataclasses
import os

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from genreward_jax.goals import load_goal
from preprocessing import models, prompts, sources
from preprocessing.goal_builder import build_goal


def _check_outputs(paths: dict[str, str], source: str, resolution: int = 64):
    goal = load_goal(paths["goal"])
    assert goal.provenance["source"] == source
    assert goal.frames.shape[1:] == (resolution, resolution, 3)
    for name in ("video", "keyframe", "contact_sheet"):
        assert os.path.getsize(paths[name]) > 1000, name
    assert iio.imread(paths["keyframe"]).shape == (resolution, resolution, 3)
    return goal


def test_file_source_mp4(file_goal, source_video):
    goal = _check_outputs(file_goal, "file")
    _, written = source_video
    assert goal.frames.shape[0] == written.shape[0]
    assert goal.keyframe_prompts == ["a white square on the right", "a white block"]
    # mp4 is lossy: the decoded, resized first frame is close to the resized original.
    original = np.asarray(Image.fromarray(written[0]).resize((64, 64), Image.Resampling.BILINEAR))
    assert np.abs(goal.frames[0].astype(int) - original.astype(int)).mean() < 12


def test_file_source_folder_of_frames(goal_config, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (18, 40, 40, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        iio.imwrite(folder / f"frame_{i}.png", frame)  # natural order: frame_2 before frame_10
    cfg = dataclasses.replace(
        goal_config, goal_source="file", video_path=str(folder), resolution=40
    )
    goal = _check_outputs(build_goal(cfg), "file", resolution=40)
    assert np.array_equal(goal.frames, frames)  # already 40x40: stored untouched, in order


def test_file_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="goal video not found"):
        sources.file_video(str(tmp_path / "nope.mp4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no image frames"):
        sources.file_video(str(tmp_path / "empty"))


def test_too_short_video_is_refused(goal_config, tmp_path):
    path = tmp_path / "short.gif"
    iio.imwrite(
        path,
        np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((5, 32, 32, 3), np.uint8) * 40,
    )
    cfg = dataclasses.replace(goal_config, goal_source="file", video_path=str(path))
    with pytest.raises(ValueError, match="has 5 frames, fewer than the 17 to sample"):
        build_goal(cfg)


def test_scripted_source(goal_config):
    goal = _check_outputs(
        build_goal(dataclasses.replace(goal_config, goal_source="scripted")), "scripted"
    )
    info = goal.provenance["source_info"]
    assert info["expert_succeeded"] is True
    # The expert moves the arm: first and last frames differ clearly.
    assert np.abs(goal.frames[0].astype(int) - goal.frames[-1].astype(int)).mean() > 2
    # What training needs to start episodes in the goal's scene and pace the video reward.
    assert goal.placement is not None and goal.placement.shape == (6,)
    assert goal.states.shape == (goal.frames.shape[0], 39)
    np.testing.assert_allclose(goal.states[0][4:7], goal.placement[:3], atol=1e-5)  # the puck
    assert goal.duration_steps == goal.frames.shape[0] - 1
    assert goal.keyframe_prompts == list(prompts.keyframe_prompts("pick-place-v3"))


def test_generate_source(goal_config):
    cfg = dataclasses.replace(
        goal_config,
        goal_source="generate",
        first_frame_size=64,
        num_inference_steps=2,
        num_sampled_frames=5,
    )
    goal = _check_outputs(build_goal(cfg), "generate")
    assert goal.frames.shape[0] == models.TINY_SAMPLE_FRAMES
    assert goal.latent_mean.shape[0] == 2  # 5 frames -> 2 latent frames
    info = goal.provenance["source_info"]
    assert info["scheduler"] == "CogVideoXDPMScheduler" and info["use_dynamic_cfg"] is True
    assert goal.video_prompt == goal.provenance["video_prompt"] != ""
    assert goal.placement is not None and goal.states is None
    assert 0 < goal.duration_steps <= 256  # the expert's pace from the same placement


def test_generate_from_another_domain(goal_config, tmp_path):
    """--condition_image: the video starts from the user's frame, not the env's; such a goal
    has no Meta-World placement or pace."""
    image_path = str(tmp_path / "bridge.png")
    rng = np.random.default_rng(0)
    iio.imwrite(image_path, rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    cfg = dataclasses.replace(
        goal_config,
        goal_source="generate",
        first_frame_size=64,
        num_inference_steps=2,
        num_sampled_frames=5,
        condition_image=image_path,
    )
    goal = _check_outputs(build_goal(cfg), "generate")
    assert goal.placement is None and goal.duration_steps is None
    assert goal.provenance["source_info"]["condition_image"] == image_path
    square = sources.condition_image(image_path, 64)
    assert square.shape == (64, 64, 3)
    with pytest.raises(FileNotFoundError, match="condition_image"):
        sources.condition_image(str(tmp_path / "missing.png"), 64)


def test_keyframe_prompts_default_to_the_task_description():
    assert (
        prompts.keyframe_prompts("shelf-place-v3")
        == prompts.TASK_KEYFRAME_PROMPTS["shelf-place-v3"]
    )
    assert "shelf" in prompts.keyframe_prompts("shelf-place-v3")[0]
    assert prompts.keyframe_prompts("reach-v3") == (prompts.task_prompt("reach-v3"),)
    assert prompts.keyframe_prompts("shelf-place-v3", "generic") == prompts.KEYFRAME_PROMPTS
    with pytest.raises(ValueError, match="keyframe prompt set"):
        prompts.keyframe_prompts("shelf-place-v3", "grasp")


def test_generate_refuses_sizes_the_model_cannot_make(goal_config):
    pipe = models.load_pipeline(goal_config.models)
    image = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="only generates 64x64 with 9 frames"):
        sources.generate_video(pipe, image, "a robot", seed=0, num_frames=13)
    with pytest.raises(ValueError, match="only generates 64x64 with 9 frames; got 48x64"):
        sources.generate_video(pipe, image, "a robot", seed=0, height=48)
