"""Shared helpers for the environment tests."""

import warnings

import mujoco
import numpy as np
import pytest

import genreward_jax.envs  # noqa: F401  (sets the rendering variables before mujoco loads)


@pytest.fixture(autouse=True)
def _quiet_expert_warnings():
    """Meta-World's scripted policies warn about their own gains on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
        yield


def _random_actions(seed: int, steps: int) -> np.ndarray:
    """Reproducible actions float32 [steps, 4] in [-1, 1]."""
    return np.random.default_rng(seed).uniform(-1, 1, size=(steps, 4)).astype(np.float32)


def _object_and_goal(obs: dict) -> np.ndarray:
    """Object position (state[4:7]) and goal position (state[36:39]) float32 [6]."""
    return np.concatenate([obs["state"][4:7], obs["state"][36:39]])


def _project(model: mujoco.MjModel, data: mujoco.MjData, camera: str, point, size: int):
    """Pinhole projection of a world point into the raw camera image: (row, col) floats.

    MuJoCo cameras look along -z with +x to the right and +y up in the image.
    """
    camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    position = data.cam_xpos[camera_id]
    rotation = data.cam_xmat[camera_id].reshape(3, 3)
    local = rotation.T @ (np.asarray(point) - position)
    focal = 0.5 * size / np.tan(np.deg2rad(model.cam_fovy[camera_id]) / 2)
    col = size / 2 + focal * local[0] / -local[2]
    row = size / 2 - focal * local[1] / -local[2]
    return row, col


@pytest.fixture
def random_actions():
    return _random_actions


@pytest.fixture
def object_and_goal():
    return _object_and_goal


@pytest.fixture(scope="session")
def project():
    return _project
