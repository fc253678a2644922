"""VLM-RM online: the goal's section, the reward against open_clip end to end, calibration,
resume, and the refusals at start-up."""

import dataclasses

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from genreward_jax.goals import GoalFileError, load_goal, validate_goal
from genreward_jax.rewards.goal_rewards import GoalMismatchError
from genreward_jax.rewards.quality_terms import vlmrm_terms
from genreward_jax.rewards.vlmrm_rewards import VLMRMConfig, VLMRMRewards, clip_folder

from .test_goal_rewards import copy_goal


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def open_clip_model(tiny_goal):
    model, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{clip_folder(*tiny_goal)}"
    )
    return model.eval(), preprocess


def batch(frames, rewards, first=None):
    n = len(frames)
    first = np.zeros(n, bool) if first is None else first
    return {
        "image": frames,
        "reward": np.asarray(rewards, np.float32),
        "is_first": first,
        "is_last": np.zeros(n, bool),
    }


def test_goal_section_holds_open_clip_embeddings_of_its_prompts(tiny_goal):
    _, goal = tiny_goal
    clip = goal.provenance["clip"]
    assert clip["vlmrm_goal_prompts"] == goal.keyframe_prompts  # the default goal prompts
    model, preprocess = open_clip_model(tiny_goal)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{clip_folder(*tiny_goal)}")
    with torch.no_grad():
        text = model.encode_text(tokenizer(clip["vlmrm_baseline_prompts"])).numpy()
        image = model.encode_image(preprocess(Image.fromarray(goal.keyframe))[None]).numpy()
    np.testing.assert_allclose(goal.vlmrm_baseline_text, text, atol=1e-5)
    np.testing.assert_allclose(goal.clip_keyframe_embedding, image[0], atol=1e-5)
    partial = dataclasses.replace(goal, clip_keyframe_embedding=None)
    with pytest.raises(GoalFileError, match="needs all of"):
        validate_goal(partial)


def test_reward_matches_open_clip_end_to_end(tiny_goal):
    """Our tower + VLM-RM's formula on the goal's own frames against open_clip's image
    embedding with the same formula in numpy (λ = 0.5, the raw reward: paper scaling, w = 1)."""
    goal_path, goal = tiny_goal
    model = VLMRMRewards(
        VLMRMConfig(goal_file=goal_path, weight=1.0, env_reward=False, reward_scaling="paper"),
        num_envs=3,
        image_size=64,
    )
    assert model.extra_size is None and not model.render_mask().any()
    frames = goal.frames[[0, len(goal.frames) // 2, -1]]
    out = model.process(batch(frames, [5.0, 5.0, 5.0]))

    torch_model, preprocess = open_clip_model(tiny_goal)
    with torch.no_grad():
        x = torch_model.encode_image(
            torch.stack([preprocess(Image.fromarray(f)) for f in frames])
        ).numpy()
    g = unit(unit(goal.vlmrm_goal_text).mean(0))
    b = unit(unit(goal.vlmrm_baseline_text).mean(0))
    d = unit(g - b)
    p = 0.5 * np.outer(d, d) + 0.5 * np.eye(len(d))
    want = 1.0 - 0.5 * np.square((unit(x) - g) @ p).sum(-1)
    np.testing.assert_allclose(out["r_vlmrm"], want, atol=1e-5)
    np.testing.assert_allclose(out["reward"], want, atol=1e-5)  # env reward off
    np.testing.assert_array_equal(out["r_env"], 5.0)
    assert np.ptp(want) > 1e-4  # the frames are told apart
    assert set(model.replay_entries(out)) == {"r_env", "r_vlmrm"}
    bigger = VLMRMRewards(VLMRMConfig(goal_file=goal_path), num_envs=2, image_size=32)
    assert bigger.extra_size == 64 and bigger.render_mask().all()  # CLIP's size is rendered


def test_calibrated_term_is_a_fraction_of_the_env_spread_and_resumes(tiny_goal):
    goal_path, _ = tiny_goal
    config = VLMRMConfig(goal_file=goal_path, weight=0.5)
    model = VLMRMRewards(config, num_envs=4, image_size=64)
    rng = np.random.default_rng(0)

    def step(m, i):
        frames = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
        return m.process(batch(frames, rng.normal(0, 2.0, 4), first=np.full(4, i == 0)))

    terms, envs = [], []
    for i in range(60):
        out = step(model, i)
        if i == 0:
            np.testing.assert_array_equal(out["reward"], out["r_env"])  # no term on a reset
        else:
            terms.append(out["reward"] - out["r_env"])
            envs.append(out["r_env"])
    spread = np.std(np.concatenate(terms[20:])) / np.std(np.concatenate(envs))
    assert 0.4 < spread < 0.6, spread
    metrics = model.metrics()
    assert 0.4 < metrics["rewards/vlmrm_step_spread_vs_env"] < 0.6

    again = VLMRMRewards(config, num_envs=4, image_size=64)
    again.load_state_dict(model.state_dict())
    state = rng.bit_generator.state
    first = step(model, 1)
    rng.bit_generator.state = state
    np.testing.assert_array_equal(step(again, 1)["reward"], first["reward"])


def test_goals_it_cannot_trust_are_refused_in_one_line(tmp_path, tiny_goal):
    goal_path, goal = tiny_goal
    clip = goal.provenance["clip"]
    cases = [
        (
            {"vlmrm_goal_text": None, "vlmrm_baseline_text": None, "clip_keyframe_embedding": None},
            GoalFileError,
            "no VLM-RM section",
        ),
        (
            {
                "provenance": {
                    **goal.provenance,
                    "clip": {k: v for k, v in clip.items() if k != "hash"},
                }
            },
            GoalFileError,
            "--clip_pretrained",
        ),
        (
            {"provenance": {**goal.provenance, "clip": {**clip, "hash": "0" * 64}}},
            GoalMismatchError,
            "weights hash differs",
        ),
        ({"clip_keyframe_embedding": -goal.clip_keyframe_embedding}, GoalMismatchError, "cosine"),
    ]
    for i, (changes, error, message) in enumerate(cases):
        path = copy_goal(tmp_path / str(i), goal_path, goal, **changes)
        with pytest.raises(error, match=message):
            VLMRMRewards(VLMRMConfig(goal_file=path), num_envs=1, image_size=64)
        if i == 1:  # the benchmark skips VLM-RM's rows for such a goal instead of failing
            options = type("Options", (), {"vlmrm_lambda": 0.5})
            assert vlmrm_terms(path, load_goal(path), options) == []
    with pytest.raises(ValueError, match="vlmrm_lambda"):
        VLMRMConfig(goal_file=goal_path, lam=1.5)
