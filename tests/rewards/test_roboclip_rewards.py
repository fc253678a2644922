"""RoboCLIP online: the goal's S3D target, the episode score against our PyTorch S3D, where the
reward lands, calibration, resume, and the refusals at start-up."""

import numpy as np
import pytest
import torch

from genreward_jax.goals import GoalFileError, encoder_folder
from genreward_jax.rewards.goal_rewards import GoalMismatchError
from genreward_jax.rewards.roboclip import centre_crop, episode_clip, kept_step
from genreward_jax.rewards.roboclip_rewards import RoboCLIPConfig, RoboCLIPRewards
from preprocessing import prompts
from preprocessing.models import ModelSpec, load_s3d

from .test_goal_rewards import copy_goal

LENGTH = 12  # env steps per episode: frames kept after steps 1, 5, 9


def torch_s3d():
    """The tiny goal's S3D, rebuilt offline from the same seed (what made its target)."""
    return load_s3d(ModelSpec(mode="tiny", seed=0), prompts.vocabulary())[0]


def run_episode(model, frames, rewards, start=0):
    """Feeds LENGTH + 1 observations (reset first, is_last on the final one); returns outputs."""
    outs = []
    for step in range(LENGTH + 1):
        outs.append(
            model.process(
                {
                    "image": frames[start + step][None],
                    "reward": np.array([rewards[step]], np.float32),
                    "is_first": np.array([step == 0]),
                    "is_last": np.array([step == LENGTH]),
                }
            )
        )
    return outs


def test_text_target_and_episode_score_match_pytorch_s3d(tiny_goal):
    goal_path, goal = tiny_goal
    entry = goal.provenance["roboclip"]
    assert entry["target"] == "text" and entry["stride"] == 4 and entry["crop"] == 250
    model_t = torch_s3d()
    with torch.no_grad():
        np.testing.assert_allclose(
            goal.roboclip_target, model_t.text_module([entry["prompt"]])[0].numpy(), atol=1e-5
        )
    model = RoboCLIPRewards(
        RoboCLIPConfig(
            goal_file=goal_path,
            weight=1.0,
            env_reward=False,
            reward_scaling="paper",
            render_size=64,
            episode_length=LENGTH,
        ),
        num_envs=1,
        image_size=64,
    )
    assert model.extra_size is None and model.crop == 64
    frames = goal.frames
    outs = run_episode(model, frames, np.ones(LENGTH + 1))
    kept = frames[: LENGTH + 1][kept_step(np.arange(LENGTH + 1), 4)]
    assert len(kept) == 3  # steps 1, 5, 9; the clip uses the even part, 2 frames
    clip = episode_clip(centre_crop(kept, 64))
    with torch.no_grad():
        video = model_t(torch.from_numpy(clip).permute(3, 0, 1, 2)[None])[0].numpy()
    want = float(video @ goal.roboclip_target)
    rewards = np.array([o["reward"][0] for o in outs])
    np.testing.assert_allclose(rewards[-1], want, rtol=1e-4, atol=1e-4 * abs(want))
    assert np.all(rewards[:-1] == 0.0) and outs[-1]["r_roboclip"][0] == rewards[-1]
    assert set(model.replay_entries(outs[0])) == {"r_env", "r_roboclip"}
    assert model.metrics()["rewards/roboclip_episodes"] == 1.0
    bigger = RoboCLIPRewards(RoboCLIPConfig(goal_file=goal_path, render_size=96), 2, 64)
    assert bigger.extra_size == 96 and bigger.crop == 96
    assert bigger.render_mask(np.array([False, True])).tolist() == [True, False]  # step 1 kept


def test_calibrated_episode_term_and_resume(tiny_goal):
    goal_path, goal = tiny_goal
    config = RoboCLIPConfig(goal_file=goal_path, weight=0.5, render_size=64, episode_length=LENGTH)
    model = RoboCLIPRewards(config, num_envs=1, image_size=64)
    rng = np.random.default_rng(0)
    scores, terms = [], []
    for _ in range(6):
        frames = rng.integers(0, 256, (LENGTH + 1, 64, 64, 3), dtype=np.uint8)
        out = run_episode(model, frames, rng.normal(0, 2.0, LENGTH + 1))[-1]
        scores.append(out["r_roboclip"][0])
        terms.append(out["reward"][0] - out["r_env"][0])
    assert np.std(scores) > 0
    z = (np.array(scores) - np.mean(scores)) / np.std(scores)
    scale = 0.5 * model.env_stats.std * LENGTH
    np.testing.assert_allclose(terms[-1], scale * z[-1], rtol=1e-3)  # w·σ_env·L·z at the end
    frames = rng.integers(0, 256, (LENGTH + 1, 64, 64, 3), dtype=np.uint8)
    again = RoboCLIPRewards(config, num_envs=1, image_size=64)
    for step in range(6):  # half an episode, then a copy resumes it
        obs = {
            "image": frames[step][None],
            "reward": np.zeros(1, np.float32),
            "is_first": np.array([step == 0]),
            "is_last": np.array([False]),
        }
        model.process(obs)
    again.load_state_dict(model.state_dict())
    for step in range(6, LENGTH + 1):
        obs = {
            "image": frames[step][None],
            "reward": np.zeros(1, np.float32),
            "is_first": np.array([False]),
            "is_last": np.array([step == LENGTH]),
        }
        a, b = model.process(obs), again.process(obs)
    assert a["reward"][0] == b["reward"][0] and a["r_roboclip"][0] != 0


def test_goals_it_cannot_trust_are_refused(tmp_path, tiny_goal):
    goal_path, goal = tiny_goal
    path = copy_goal(
        tmp_path / "none",
        goal_path,
        goal,
        roboclip_target=None,
        provenance={k: v for k, v in goal.provenance.items() if k != "roboclip"},
    )
    with pytest.raises(GoalFileError, match="no RoboCLIP section"):
        RoboCLIPRewards(RoboCLIPConfig(goal_file=path), 1, 64)
    tampered = {**goal.provenance, "roboclip": {**goal.provenance["roboclip"], "hash": "0" * 64}}
    path = copy_goal(tmp_path / "hash", goal_path, goal, provenance=tampered)
    with pytest.raises(GoalMismatchError, match="weights hash differs"):
        RoboCLIPRewards(RoboCLIPConfig(goal_file=path), 1, 64)
    with pytest.raises(GoalFileError, match="needs provenance 'roboclip'"):
        copy_goal(
            tmp_path / "prov",
            goal_path,
            goal,
            provenance={k: v for k, v in goal.provenance.items() if k != "roboclip"},
        )
    assert encoder_folder(goal_path, goal, "roboclip").endswith("s3d")
