"""The video reward prefers behaviour that looks like the goal video.

A scripted-expert goal video is encoded by a tiny random-weight CogVideoX VAE (random weights still
preserve pixel similarity). From the goal's own first scene (the paper generates the goal video from
the task's first frame), rollouts of a noisy expert must score higher than rollouts of a random
policy, through our Flax VAE and the online stage's windowing.

The window spans as many steps as the goal video: with random weights the latent cosine is ~0.99
for any two clips of one scene, and only temporally aligned clips separate expert from random
(measured: with a 128-step window and a 62-frame goal the two score alike)."""

import numpy as np
import pytest

from genreward_jax.encoders import latent_mean_fn, load_vae_encoder
from genreward_jax.envs import EnvConfig, MetaWorldEnv, expert_policy
from genreward_jax.goals import encoder_folder
from genreward_jax.rewards.video import VideoWindows, make_video_reward_fn

TASK = "pick-place-v3"
EXPERT_NOISE = 0.3


@pytest.fixture(scope="module")
def goal_and_reward(tiny_goal):
    goal_path, goal = tiny_goal
    vae = load_vae_encoder(encoder_folder(goal_path, goal, "vae"))
    return goal, make_video_reward_fn(latent_mean_fn(vae), goal.latent_mean)


def window_reward(reward_fn, interval: int, policy: str, seed: int) -> float:
    """Runs one window of a noisy expert or a random policy in the goal's scene (env seed 0, the
    goal's seed); returns the window's video reward."""
    env = MetaWorldEnv(EnvConfig(task=TASK, seed=0, size=64, time_limit=interval))
    windows = VideoWindows(num_envs=1, interval=interval, num_samples=17, resolution=64)
    rng = np.random.default_rng(seed)
    expert = expert_policy(TASK)
    try:
        obs = env.reset()
        for step in range(interval + 1):
            closed, clips = windows.add(np.array([step]), obs["image"][None])
            if len(closed):
                return float(reward_fn(clips)[0])
            if policy == "expert":
                action = expert.get_action(obs["state"]) + EXPERT_NOISE * rng.normal(size=4)
            else:
                action = rng.uniform(-1, 1, 4)
            obs = env.step(np.clip(action, -1, 1).astype(np.float32))
    finally:
        env.close()
    raise AssertionError("window never closed")


@pytest.mark.slow
def test_expert_scores_higher_than_random(goal_and_reward):
    goal, reward_fn = goal_and_reward
    interval = goal.frames.shape[0] - 1
    expert = [window_reward(reward_fn, interval, "expert", seed) for seed in (1, 2, 3)]
    random = [window_reward(reward_fn, interval, "random", seed) for seed in (1, 2, 3)]
    assert all(-1.0 <= r <= 1.0 for r in expert + random)
    assert min(expert) > max(random), f"expert {expert} vs random {random}"
