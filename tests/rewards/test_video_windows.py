"""Video-reward windows: which steps are sampled, where the reward lands, what gets encoded."""

import jax.numpy as jnp
import numpy as np
import pytest

from genreward_jax.rewards.video import VideoWindows, cosine_to_goal, make_video_reward_fn


def frames_showing(values: np.ndarray, res: int = 4) -> np.ndarray:
    """One frame per env [N, R, R, 3] whose pixels all equal the env's value."""
    return np.broadcast_to(values[:, None, None, None], (len(values), res, res, 3)).astype(np.uint8)


def test_windows_sample_uniformly_and_close_on_interval():
    windows = VideoWindows(num_envs=2, interval=8, num_samples=5, resolution=4)
    np.testing.assert_array_equal(windows.offsets, [0, 2, 4, 6, 8])
    closed_at = {}
    # env 0 starts at step 0; env 1 is 3 steps behind (its episode began later)
    for t in range(0, 20):
        steps = np.array([t, max(t - 3, 0)])
        needs = windows.needs_frame(steps)
        np.testing.assert_array_equal(needs, np.isin(steps % 8, [0, 2, 4, 6]))
        envs, clips = windows.add(steps, frames_showing(steps))
        for env, clip in zip(envs, clips, strict=True):
            closed_at.setdefault(int(env), []).append((t, clip[:, 0, 0, 0].tolist()))
    assert closed_at[0] == [(8, [0, 2, 4, 6, 8]), (16, [8, 10, 12, 14, 16])]
    assert closed_at[1] == [(11, [0, 2, 4, 6, 8]), (19, [8, 10, 12, 14, 16])]


def test_cosine_to_goal():
    goal = jnp.arange(1.0, 7.0).reshape(1, 2, 3)
    latents = jnp.stack([goal, -goal, 2.5 * goal])
    np.testing.assert_allclose(cosine_to_goal(latents, goal), [1.0, -1.0, 1.0], rtol=1e-6)


def test_reward_fn_refuses_a_latent_of_another_shape():
    reward = make_video_reward_fn(lambda clips: clips.astype(jnp.float32), np.zeros((3, 4, 4, 3)))
    with pytest.raises(ValueError, match="frame count or resolution"):
        reward(jnp.zeros((2, 5, 4, 4, 3), jnp.uint8))


def test_bad_interval():
    with pytest.raises(ValueError, match="interval"):
        VideoWindows(num_envs=1, interval=0, num_samples=3, resolution=4)
