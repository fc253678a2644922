"""Per-step cost of each reward model on this machine: GenReward's terms, VLM-RM, RoboCLIP,
TADPoLe.

    .venv/bin/python -m bench.reward_cost                     # about 3 minutes on 2 CPU cores
    .venv/bin/python -m bench.reward_cost --goal_file=goals/pick-place-v3/goal.npz

Two parts, one run, side by side:
  * each reward model's ``process`` (what the training loop calls every env step) on one env,
    fed episodes of random frames, with the models of --goal_file (default: a tiny scripted goal
    made here, tiny random-weight encoders): mean milliseconds per env step after a warm-up
    episode (compiles excluded);
  * the real-size towers with random weights (no pretrained weights can be had here): open_clip
    ViT-B-32 at 224² per frame (VLM-RM's per-step call) and S3D-G on one episode's video (32
    frames of 250², RoboCLIP's one call per 128-step episode; 64 frames for 256 steps) and, with
    --real_sd, Stable Diffusion 2.1-base's VAE encoder on one 512² frame and its UNet on a batch
    of 2 at 64² latents (TADPoLe's two calls per env step), jitted, float32: median of --repeats
    calls.

Prints a table and writes JSON (default bench/results/reward_cost.json).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goal_file", default=None)
    parser.add_argument("--episode_length", type=int, default=128)
    parser.add_argument("--episodes", type=int, default=2, help="timed episodes per model")
    parser.add_argument("--repeats", type=int, default=3, help="calls per real-size tower")
    parser.add_argument(
        "--real_sd", action="store_true", help="time SD 2.1-base's VAE and UNet (minutes, 8 GB)"
    )
    parser.add_argument("--out", default="bench/results/reward_cost.json")
    return parser.parse_args(argv)


def tiny_goal(folder: str) -> str:
    from preprocessing.goal_builder import GoalConfig, build_goal
    from preprocessing.models import ModelSpec

    path = os.path.join(folder, "goal.npz")
    if not os.path.exists(path):
        build_goal(
            GoalConfig(
                task="reach-v3",
                goal_source="scripted",
                out_dir=folder,
                models=ModelSpec(mode="tiny", tiny_dir=os.path.join(folder, "m")),
                resolution=64,
                num_sampled_frames=17,
                max_steps=128,
            )
        )
    return path


def reward_models(goal_file: str, length: int) -> dict:
    from genreward_jax.rewards.goal_rewards import GoalRewards, RewardConfig
    from genreward_jax.rewards.roboclip_rewards import RoboCLIPConfig, RoboCLIPRewards
    from genreward_jax.rewards.tadpole_rewards import TADPoLeConfig, TADPoLeRewards
    from genreward_jax.rewards.vlmrm_rewards import VLMRMConfig, VLMRMRewards

    return {
        "genreward (DINOv3 every step, VAE per 128-step window)": GoalRewards(
            RewardConfig(
                goal_file=goal_file,
                episode_length=length,
                video_interval=128,
                reward_scaling="calibrated",
            ),
            num_envs=1,
            image_size=64,
        ),
        "vlmrm (CLIP every step)": VLMRMRewards(VLMRMConfig(goal_file=goal_file), 1, 64),
        "roboclip (S3D once per episode)": RoboCLIPRewards(
            RoboCLIPConfig(goal_file=goal_file, render_size=64, episode_length=length), 1, 64
        ),
        "tadpole (VAE + UNet ×2 every step)": TADPoLeRewards(
            TADPoLeConfig(goal_file=goal_file, render_size=64), 1, 64
        ),
    }


def time_process(model, length: int, episodes: int, rng: np.random.Generator) -> float:
    """ms per env step of model.process over `episodes` episodes after one warm-up episode."""

    def episode():
        for step in range(length + 1):
            obs = {
                "image": rng.integers(0, 256, (1, 64, 64, 3), dtype=np.uint8),
                "reward": np.zeros(1, np.float32),
                "is_first": np.array([step == 0]),
                "is_last": np.array([step == length]),
                "success": np.zeros(1, bool),
            }
            model.process(obs)

    episode()
    start = time.perf_counter()
    for _ in range(episodes):
        episode()
    return 1e3 * (time.perf_counter() - start) / (episodes * (length + 1))


def time_call(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def random_params(shapes, seed: int):
    """Normal parameters of the given abstract tree, scaled by 1/sqrt(fan-in) (no init pass)."""
    leaves, tree = jax.tree.flatten(shapes)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    scale = [leaf.shape[-2] ** -0.5 if len(leaf.shape) > 1 else 0.1 for leaf in leaves]
    return jax.tree.unflatten(
        tree,
        [s * jax.random.normal(k, x.shape) for s, k, x in zip(scale, keys, leaves, strict=True)],
    )


def real_size_sd(repeats: int) -> dict:
    """SD 2.1-base: VAE encoder on one 512² frame, UNet on 2 latents of 64² (text and empty
    prompt), random weights."""
    from genreward_jax.encoders import sd_unet, sd_vae
    from preprocessing.models import SD21_BASE_UNET_CONFIG, SD_VAE_CONFIG

    out = {}
    vae_config = sd_vae.SDVAEConfig.from_diffusers(SD_VAE_CONFIG)
    vae = sd_vae.SDVAEEncoder(vae_config)
    params = random_params(sd_vae.init_shapes(vae_config), 0)
    out["SD VAE encoder, 1 frame 512²"] = time_call(
        jax.jit(vae.apply), ({"params": params}, jnp.zeros((1, 512, 512, 3))), repeats
    )
    config = sd_unet.SDUNetConfig.from_diffusers(SD21_BASE_UNET_CONFIG)
    unet = sd_unet.SDUNet(config)
    params = random_params(sd_unet.init_shapes(config), 1)
    args = (
        {"params": params},
        jnp.zeros((2, 64, 64, 4)),
        jnp.full(2, 550),
        jnp.zeros((2, 77, 1024)),
    )
    out["SD 2.1-base UNet, batch 2 at 64²"] = time_call(jax.jit(unet.apply), args, repeats)
    return out


def real_size_towers(repeats: int) -> dict:
    """Random-weight real-size towers: CLIP ViT-B-32 per frame, S3D-G per episode video."""
    from genreward_jax.encoders import clip_vit, s3d

    out = {}
    config = clip_vit.CLIPVisionConfig()
    tower = clip_vit.CLIPVisionTower(config)
    pixels = jnp.zeros((1, 224, 224, 3))
    params = tower.init(jax.random.key(0), pixels)["params"]
    out["CLIP ViT-B-32, 1 frame 224²"] = time_call(
        jax.jit(tower.apply), ({"params": params}, pixels), repeats
    )
    video_tower = s3d.S3DVideoTower()
    params = video_tower.init(jax.random.key(0), jnp.zeros((1, 8, 32, 32, 3)))["params"]
    for frames in (32, 64):
        video = jnp.zeros((1, frames, 250, 250, 3))
        out[f"S3D-G, 1 video {frames}×250²"] = time_call(
            jax.jit(video_tower.apply), ({"params": params}, video), repeats
        )
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    goal_file = args.goal_file or tiny_goal(
        os.path.join(os.path.dirname(args.out) or ".", "reward_cost_goal")
    )
    rng = np.random.default_rng(0)
    per_step = {
        name: time_process(model, args.episode_length, args.episodes, rng)
        for name, model in reward_models(goal_file, args.episode_length).items()
    }
    towers = real_size_towers(args.repeats)
    if args.real_sd:
        towers.update(real_size_sd(args.repeats))
    lines = ["| reward model, goal models | ms per env step |", "|---|---|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in per_step.items()]
    lines += ["", "| real-size tower, random weights, float32 | ms per call |", "|---|---|"]
    lines += [f"| {name} | {ms:.0f} |" for name, ms in towers.items()]
    table = "\n".join(lines)
    print(table)
    result = {
        "goal_file": os.path.abspath(goal_file),
        "episode_length": args.episode_length,
        "per_step_ms": per_step,
        "real_size_ms": towers,
        "backend": jax.default_backend(),
        "devices": str(jax.devices()),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
