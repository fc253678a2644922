"""Offscreen frames of one Meta-World camera, upright, fast on CPU by default."""

from __future__ import annotations

import os

import mujoco
import numpy as np

CAMERAS: tuple[str, ...] = (
    "corner",
    "corner2",
    "corner3",
    "corner4",
    "topview",
    "behindGripper",
    "gripperPOV",
)

# Meta-World's corner cameras are defined with their image "up" axis pointing down in the world
# (camera y axis has negative world z), so their raw frames are rotated 180 degrees; rotating
# back (`[::-1, ::-1]`) makes them upright without mirroring. topview looks straight down with
# up = +y (away from the robot base); the gripper cameras already have up pointing upward.
ROTATED_CAMERAS: frozenset[str] = frozenset({"corner", "corner2", "corner3", "corner4"})


def use_fast_rendering(model: mujoco.MjModel) -> None:
    """Turn off multisampling for every context created from `model` afterwards.

    Must run before the first renderer is created: the multisample buffer is allocated with
    the GL context.
    """
    model.vis.quality.offsamples = 0


def ensure_framebuffer(model: mujoco.MjModel, size: int) -> None:
    """Grow the model's offscreen framebuffer so a `size` x `size` render fits."""
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), size)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), size)


class FrameRenderer:
    """One camera at one square size; frames uint8 [size, size, 3], upright, not mirrored.

    Each instance owns its GL context (mujoco.Renderer makes it current on every render),
    so an env can keep a policy-size renderer and a larger one for extra frames side by side.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        camera: str,
        size: int,
        full_quality: bool = False,
    ) -> None:
        if camera not in CAMERAS:
            raise ValueError(f"Unknown camera {camera!r}. Valid cameras: {', '.join(CAMERAS)}")
        self._camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self._camera_id < 0:
            raise ValueError(f"This Meta-World model has no camera named {camera!r}.")
        self.camera = camera
        self.size = size
        self._data = data
        self._rotate = camera in ROTATED_CAMERAS
        ensure_framebuffer(model, size)
        try:
            self._renderer = mujoco.Renderer(model, height=size, width=size)
        except mujoco.FatalError as error:
            raise RuntimeError(
                f"Could not create an offscreen OpenGL context ({error}). MuJoCo picks its GL "
                f"backend when first imported (MUJOCO_GL is now {os.environ.get('MUJOCO_GL')!r}): "
                "import genreward_jax.envs before anything imports mujoco, or export "
                "MUJOCO_GL=egl PYOPENGL_PLATFORM=egl (osmesa where EGL is missing)."
            ) from error
        if not full_quality:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def _upright(self, frame: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(frame[::-1, ::-1]) if self._rotate else frame

    def render(self) -> np.ndarray:
        """Current scene as uint8 [size, size, 3]."""
        self._renderer.update_scene(self._data, camera=self._camera_id)
        return self._upright(self._renderer.render())

    def render_segmentation(self) -> np.ndarray:
        """Per-pixel (object id, object type) int32 [size, size, 2], oriented like `render`.

        Used to check orientation against known assets; -1 marks background.
        """
        self._renderer.update_scene(self._data, camera=self._camera_id)
        self._renderer.enable_segmentation_rendering()
        try:
            segmentation = self._renderer.render()
        finally:
            self._renderer.disable_segmentation_rendering()
        return self._upright(segmentation)

    def close(self) -> None:
        self._renderer.close()
