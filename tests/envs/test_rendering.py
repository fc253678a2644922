"""Frames: non-black, upright and not mirrored (checked against scene geometry), per camera."""

import itertools

import mujoco
import numpy as np
import pytest

from genreward_jax.envs import CAMERAS, EnvConfig, MetaWorldEnv
from genreward_jax.envs.rendering import ROTATED_CAMERAS

SIZE = 96


@pytest.fixture(scope="module")
def first_frames():
    """Per camera: the env after reset (pick-place, seed 1) and its segmentation."""
    envs = {}
    try:
        for camera in CAMERAS:
            env = MetaWorldEnv(EnvConfig("pick-place", seed=1, size=SIZE, camera=camera))
            obs = env.reset()
            envs[camera] = (env, obs["image"], env.renderer.render_segmentation())
        yield envs
    finally:
        for env, _, _ in envs.values():
            env.close()


def _geom_pixels(model, segmentation, geom_ids):
    is_geom = segmentation[..., 1] == mujoco.mjtObj.mjOBJ_GEOM
    return np.argwhere(is_geom & np.isin(segmentation[..., 0], list(geom_ids)))


@pytest.mark.parametrize("camera", CAMERAS)
def test_frame_is_uint8_and_not_black(first_frames, camera):
    _, image, _ = first_frames[camera]
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert image.mean() > 30 and image.std() > 10


def test_cameras_give_different_frames(first_frames):
    for a, b in itertools.combinations(CAMERAS, 2):
        if {a, b} == {"corner2", "corner4"}:
            continue  # Meta-World defines corner4 with the same pose as corner2.
        difference = np.abs(first_frames[a][1].astype(int) - first_frames[b][1]).mean()
        assert difference > 10, (a, b, difference)


@pytest.mark.parametrize("camera", CAMERAS)
def test_object_appears_where_the_camera_geometry_puts_it(first_frames, project, camera):
    """The frame is a true (unmirrored) pinhole image: of the camera itself, or of the camera
    rolled by 180 degrees for the corner cameras. A plain vertical flip would fail here."""
    env, _, segmentation = first_frames[camera]
    model, data = env.sim.model, env.sim.data
    object_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "objGeom")
    row, col = project(model, data, camera, data.geom_xpos[object_geom], SIZE)
    if camera in ROTATED_CAMERAS:
        row, col = SIZE - row, SIZE - col
    pixels = _geom_pixels(model, segmentation, {object_geom})
    assert len(pixels) > 0, "object not visible"
    centre = pixels.mean(axis=0) + 0.5
    np.testing.assert_allclose(centre, [row, col], atol=3.0)


@pytest.mark.parametrize("camera", [c for c in CAMERAS if c != "topview"])
def test_world_up_points_up_in_the_frame(first_frames, project, camera):
    """A point above the object appears higher in the frame (topview looks straight down)."""
    env, _, _ = first_frames[camera]
    model, data = env.sim.model, env.sim.data
    object_geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "objGeom")
    base = data.geom_xpos[object_geom]
    row_low, _ = project(model, data, camera, base, SIZE)
    row_high, _ = project(model, data, camera, base + np.array([0.0, 0.0, 0.05]), SIZE)
    if camera in ROTATED_CAMERAS:
        row_low, row_high = SIZE - row_low, SIZE - row_high
    assert row_high < row_low


@pytest.mark.parametrize("camera", sorted(ROTATED_CAMERAS) + ["behindGripper"])
def test_table_is_at_the_bottom(first_frames, camera):
    env, _, segmentation = first_frames[camera]
    model = env.sim.model
    table_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "tablelink")
    table_geoms = set(np.flatnonzero(model.geom_bodyid == table_body))
    pixels = _geom_pixels(model, segmentation, table_geoms)
    assert len(pixels) > SIZE  # the table is in view
    assert pixels[:, 0].mean() > SIZE / 2


def test_fast_rendering_drops_multisampling_shadows_and_reflections():
    fast = MetaWorldEnv(EnvConfig("pick-place", seed=1, size=SIZE))
    full = MetaWorldEnv(EnvConfig("pick-place", seed=1, size=SIZE, full_quality=True))
    try:
        fast_frame, full_frame = fast.reset()["image"], full.reset()["image"]
        assert fast.sim.model.vis.quality.offsamples == 0
        assert full.sim.model.vis.quality.offsamples > 0
        flags = fast.renderer._renderer.scene.flags
        assert flags[mujoco.mjtRndFlag.mjRND_SHADOW] == 0
        assert flags[mujoco.mjtRndFlag.mjRND_REFLECTION] == 0
        # Same scene, same layout: close on average, but not identical.
        difference = np.abs(fast_frame.astype(int) - full_frame).mean()
        assert 0 < difference < 20
    finally:
        fast.close()
        full.close()


def test_extra_image_only_when_requested_and_at_its_size():
    env = MetaWorldEnv(EnvConfig("pick-place", seed=2, size=64, extra_size=112))
    try:
        first = env.reset()
        assert "extra_image" not in first
        assert env._extra_renderer is None  # nothing rendered or allocated until asked
        obs = env.step(np.zeros(4), render_extra=True)
        assert obs["extra_image"].shape == (112, 112, 3)
        assert obs["extra_image"].dtype == np.uint8 and obs["extra_image"].std() > 10
        assert obs["image"].shape == (64, 64, 3)
        assert "extra_image" not in env.step(np.zeros(4))
    finally:
        env.close()


def test_extra_image_without_extra_size_is_a_clear_error():
    env = MetaWorldEnv(EnvConfig("pick-place", seed=2))
    try:
        env.reset()
        with pytest.raises(ValueError, match="extra_size"):
            env.step(np.zeros(4), render_extra=True)
    finally:
        env.close()
