"""Videos a person looks at: one mp4 writer for the whole tree, and agent-beside-goal frames."""

from __future__ import annotations

import warnings

import numpy as np

from genreward_jax.atomic import atomic_path


def write_video(path: str, frames: np.ndarray, fps: float = 20) -> None:
    """frames: uint8 [T, H, W, 3] -> H.264 mp4, written atomically. Sides are padded (not
    resized) to a multiple of 16, the H.264 macroblock, so every player shows it."""
    import imageio.v2 as imageio  # imageio-ffmpeg provides the ffmpeg binary

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"video frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # JAX warns on any fork; imageio's fork is immediately followed by exec of ffmpeg.
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        with imageio.get_writer(
            tmp, fps=fps, codec="libx264", quality=8, macro_block_size=16, ffmpeg_log_level="error"
        ) as writer:
            for frame in frames:
                writer.append_data(frame)


def beside_goal(frames: np.ndarray, goal_frames: np.ndarray) -> np.ndarray:
    """Agent frames [T, H, W, 3] with the goal video [N, R, R, 3] to their right, both at the
    agent's size; the goal plays at one frame per step and holds its last frame."""
    from PIL import Image

    height, width = frames.shape[1:3]
    goal = np.stack(
        [
            np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR))
            for f in goal_frames
        ]
    )
    index = np.minimum(np.arange(len(frames)), len(goal) - 1)
    return np.concatenate([frames, goal[index]], axis=2)
