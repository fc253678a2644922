"""Shared fixtures: tiny models and one goal file, built once per session (no network)."""

from __future__ import annotations

import dataclasses

import imageio.v3 as iio
import numpy as np
import pytest

from preprocessing.goal_builder import GoalConfig, build_goal
from preprocessing.models import ModelSpec
from preprocessing.sources import load_triton_before_rendering

# At collection, before any test (ours or tests/envs) renders with EGL: see the function's note.
load_triton_before_rendering()


def moving_square_video(num_frames: int = 24, height: int = 48, width: int = 72) -> np.ndarray:
    """[N, H, W, 3] uint8: a white square sliding over a coloured gradient (non-square frames)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        frame = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 60)], -1)
        left = t * (width - 12) // max(num_frames - 1, 1)
        frame[18:30, left : left + 12] = 255
        frames[t] = frame
    return frames


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory) -> ModelSpec:
    return ModelSpec(mode="tiny", seed=0, tiny_dir=str(tmp_path_factory.mktemp("tiny_models")))


@pytest.fixture(scope="session")
def source_video(tmp_path_factory) -> tuple[str, np.ndarray]:
    """A small mp4 on disk and the frames it was written from."""
    frames = moving_square_video()
    path = str(tmp_path_factory.mktemp("video") / "goal_in.mp4")
    iio.imwrite(path, frames, fps=8, plugin="FFMPEG", codec="libx264", macro_block_size=8)
    return path, frames


@pytest.fixture(scope="session")
def file_goal(tmp_path_factory, tiny_spec, source_video) -> dict[str, str]:
    """One goal made from the mp4 by build_goal (file source); tests read it, never modify it."""
    out = tmp_path_factory.mktemp("file_goal")
    cfg = GoalConfig(
        task="pick-place-v3",
        goal_source="file",
        video_path=source_video[0],
        out_dir=str(out),
        models=tiny_spec,
        resolution=64,
        num_sampled_frames=17,
        keyframe_prompts=("a white square on the right", "a white block"),
    )
    return build_goal(cfg)


@pytest.fixture
def goal_config(tiny_spec, tmp_path) -> GoalConfig:
    return dataclasses.replace(
        GoalConfig(), out_dir=str(tmp_path / "goal"), models=tiny_spec, resolution=64
    )
