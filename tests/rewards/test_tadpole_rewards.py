"""TADPoLe online: the goal's prompt embeddings, the reward against the release's computation in
diffusers (same draws), the per-episode noise level, exact resume, the success bonus, and the
refusals at start-up."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from genreward_jax.goals import GoalFileError, encoder_folder
from genreward_jax.rewards import tadpole
from genreward_jax.rewards.goal_rewards import GoalMismatchError
from genreward_jax.rewards.tadpole_rewards import (
    SCHEDULER_CONFIG,
    TADPoLeConfig,
    TADPoLeRewards,
    tadpole_reward_fn,
)
from preprocessing import prompts

from .test_goal_rewards import copy_goal


def config(goal_path, **changes):
    base = dict(
        goal_file=goal_path, weight=1.0, env_reward=False, reward_scaling="paper", render_size=64
    )
    return TADPoLeConfig(**{**base, **changes})


def batch(frames, first, success=None):
    n = len(frames)
    return {
        "image": frames,
        "reward": np.ones(n, np.float32),
        "is_first": np.asarray(first, bool),
        "is_last": np.zeros(n, bool),
        "success": np.zeros(n, bool) if success is None else np.asarray(success, bool),
    }


def test_goal_section_holds_the_padded_text_encoder_states_of_its_prompt(tiny_goal):
    goal_path, goal = tiny_goal
    entry = goal.provenance["tadpole"]
    assert entry["prompt"] == prompts.tadpole_prompt(goal.task)
    folder = encoder_folder(goal_path, goal, "tadpole")
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
    encoder = CLIPTextModel.from_pretrained(os.path.join(folder, "text_encoder")).eval()
    ids = tokenizer(["", entry["prompt"]], padding="max_length", max_length=77).input_ids
    with torch.no_grad():
        want = encoder(torch.tensor(ids))[0].numpy()
    assert goal.tadpole_context.shape == (2, 77, encoder.config.hidden_size)
    np.testing.assert_allclose(goal.tadpole_context, want, atol=1e-5)


def test_resize_is_torch_bilinear_without_antialiasing():
    frames = np.random.default_rng(0).integers(0, 256, (2, 448, 448, 3), np.uint8)
    ours = tadpole.frames_to_pixels(jnp.asarray(frames), 512)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    want = 2.0 * F.interpolate(x, (512, 512), mode="bilinear", align_corners=False) / 255 - 1
    np.testing.assert_allclose(ours, want.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    release = tadpole.frames_to_pixels(jnp.asarray(frames[:, :8, :8]), 8, "release")
    np.testing.assert_allclose(release, 2.0 * frames[:, :8, :8] - 1.0)  # the release's 0-255


def test_reward_matches_the_release_computation_in_diffusers(tiny_goal):
    """Our jitted reward against the release's get_reward on diffusers' VAE, DDIM schedule and
    UNet (one frame at a time, as the release calls it), fed the same posterior and noise
    draws."""
    goal_path, goal = tiny_goal
    cfg = config(goal_path)
    reward = tadpole_reward_fn(goal_path, goal, cfg)
    frames = goal.frames[[0, len(goal.frames) // 2, -1]]
    t = np.array([512, 512, 577], np.int32)
    key = jax.random.key(7)
    with jax.default_matmul_precision("highest"):
        ours = reward(jnp.asarray(frames), jnp.asarray(t), key)

    folder = encoder_folder(goal_path, goal, "tadpole")
    vae = AutoencoderKL.from_pretrained(os.path.join(folder, "vae")).eval()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(folder, "unet")).eval()
    scheduler = DDIMScheduler.from_pretrained(os.path.join(folder, "scheduler"))
    posterior_key, noise_key = jax.random.split(key)
    shape = (3, 8, 8, 4)
    draws = [np.array(jax.random.normal(k, shape)) for k in (posterior_key, noise_key)]
    posterior_draw, noise = (torch.from_numpy(d).permute(0, 3, 1, 2) for d in draws)
    c_in = torch.from_numpy(goal.tadpole_context)  # [uncond, text], as the release's c_in
    with torch.no_grad():
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        x = F.interpolate(x, (32, 32), mode="bilinear", align_corners=False)
        dist = vae.encode(2.0 * x - 1.0).latent_dist
        latent = (dist.mean + dist.std * posterior_draw) * vae.config.scaling_factor
        want = []
        for i in range(3):
            step = torch.tensor([int(t[i])])
            noisy = scheduler.add_noise(latent[i : i + 1], noise[i : i + 1], step)
            pred_uncond, pred_text = unet(
                noisy.repeat_interleave(2, dim=0), step, encoder_hidden_states=c_in
            ).sample.chunk(2)
            alignment = ((pred_text - pred_uncond) ** 2).mean([1, 2, 3])
            recon = ((pred_uncond - noise[i : i + 1]) ** 2).mean([1, 2, 3]) - (
                (pred_text - noise[i : i + 1]) ** 2
            ).mean([1, 2, 3])
            symlog = lambda v: torch.sign(v) * torch.log(1 + torch.abs(v))  # noqa: E731
            want.append(float(symlog(2000 * alignment) + symlog(200 * recon)))
    assert np.ptp(want) > 0.01  # the frames score differently
    np.testing.assert_allclose(np.asarray(ours["reward"]), want, rtol=1e-4, atol=1e-4)


def test_noise_level_per_episode_and_exact_resume(tiny_goal):
    goal_path, goal = tiny_goal
    model = TADPoLeRewards(config(goal_path, seed=3), num_envs=2, image_size=64)
    frames = goal.frames[[5, 30]]
    model.process(batch(frames, [True, True]))
    levels = model.noise_level.copy()
    assert np.all((levels >= 500) & (levels < 600))
    out = model.process(batch(frames, [False, False]))
    assert np.array_equal(model.noise_level, levels) and out["r_tadpole"].dtype == np.float32
    assert not np.array_equal(out["reward"], model.process(batch(frames, [False, False]))["reward"])
    state = model.state_dict()
    follow = [model.process(batch(frames, f)) for f in ([False, True], [False, False])]
    assert model.noise_level[0] == levels[0]  # env 0's episode goes on; env 1 redrew its level
    resumed = TADPoLeRewards(config(goal_path, seed=99), num_envs=2, image_size=64)
    resumed.load_state_dict(state)
    again = [resumed.process(batch(frames, f)) for f in ([False, True], [False, False])]
    for a, b in zip(follow, again, strict=True):
        np.testing.assert_array_equal(a["reward"], b["reward"])
    metrics = model.metrics()
    assert {"rewards/tadpole", "rewards/tadpole_alignment", "rewards/tadpole_reconstruction"} <= (
        set(metrics)
    )


def test_success_bonus_adds_the_release_sparse_term(tiny_goal):
    goal_path, goal = tiny_goal
    frames = goal.frames[[5, 30]]
    plain = TADPoLeRewards(config(goal_path, seed=1), num_envs=2, image_size=64)
    bonus = TADPoLeRewards(
        config(goal_path, seed=1, success_bonus=tadpole.RELEASE_SUCCESS_BONUS), 2, 64
    )
    for model in (plain, bonus):
        model.process(batch(frames, [True, True]))
    a = plain.process(batch(frames, [False, False], success=[True, False]))["reward"]
    b = bonus.process(batch(frames, [False, False], success=[True, False]))["reward"]
    np.testing.assert_allclose(b - a, [2.0, 0.0], atol=1e-6)


def test_refusals_at_start_up(tiny_goal, tmp_path):
    goal_path, goal = tiny_goal
    bare = copy_goal(tmp_path / "bare", goal_path, goal, tadpole_context=None)
    with pytest.raises(GoalFileError, match="no TADPoLe section"):
        TADPoLeRewards(config(bare), 1, 64)
    moved = copy_goal(tmp_path / "tampered", goal_path, goal)
    folder = encoder_folder(moved, goal, "tadpole")
    weights = os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors")
    with open(weights, "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x00\x80\x3f")
    with pytest.raises(GoalMismatchError, match="unet"):
        TADPoLeRewards(config(moved), 1, 64)
    vpred = copy_goal(tmp_path / "vpred", goal_path, goal)
    path = os.path.join(encoder_folder(vpred, goal, "tadpole"), SCHEDULER_CONFIG)
    scheduler = json.load(open(path))
    json.dump({**scheduler, "prediction_type": "v_prediction"}, open(path, "w"))
    with pytest.raises(ValueError, match="ε-prediction"):
        TADPoLeRewards(config(vpred), 1, 64)
    with pytest.raises(ValueError, match="tadpole_pixel_range"):
        config(goal_path, pixel_range="0-255")
