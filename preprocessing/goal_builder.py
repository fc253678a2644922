"""From a goal source to a validated goal file plus its pictures: the body of make_goals.py.

Kept free of absl so tests and other scripts can call `build_goal(GoalConfig(...))` directly.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.metadata
import os
import time

import numpy as np

from genreward_jax.atomic import atomic_write_json
from genreward_jax.encoders.weights import weights_hash
from genreward_jax.goals import SAMPLING_NAME, SCHEMA_VERSION, GoalFile, save_goal
from genreward_jax.rewards import roboclip
from preprocessing import artefacts, encoding, keyframe, models, prompts, sources
from preprocessing.roboclip_section import roboclip_section
from preprocessing.tadpole_section import tadpole_section
from preprocessing.vlmrm_section import vlmrm_section

GOAL_SOURCES = ("generate", "scripted", "file")
_VERSIONED_PACKAGES = (
    "numpy",
    "torch",
    "diffusers",
    "transformers",
    "open_clip_torch",
    "peft",
    "metaworld",
    "mujoco",
)


@dataclasses.dataclass
class GoalConfig:
    """Everything that determines a goal file. Sizes in pixels; S = `resolution`."""

    task: str = "pick-place-v3"
    goal_source: str = "scripted"  # "generate" | "scripted" | "file"
    out_dir: str = "goals/pick-place-v3"
    models: models.ModelSpec = dataclasses.field(default_factory=models.ModelSpec)
    resolution: int = 64  # S: the size the online stage encodes agent frames at
    num_sampled_frames: int = encoding.DEFAULT_NUM_SAMPLED_FRAMES
    seed: int = 0
    video_prompt: str | None = None  # None: the task's default prompt
    keyframe_prompts: tuple[str, ...] | None = None  # None: the task's description (Eq. 6)
    vlmrm_goal_prompts: tuple[str, ...] | None = None  # None: the keyframe prompts
    vlmrm_baseline_prompts: tuple[str, ...] = prompts.VLMRM_BASELINE_PROMPTS
    roboclip_target: str = "text"  # "text" (the task's video prompt) | "goal_video"
    roboclip_crop: int = roboclip.RELEASE_CROP
    roboclip_stride: int = roboclip.RELEASE_STRIDE
    tadpole_prompt: str | None = None  # None: prompts.tadpole_prompt(task)
    placements: int = 1  # > 1: a goal bank, one goal per placement (env seeds seed, seed+1, ...)
    camera: str = "corner"
    device: str = "cpu"
    # scripted
    max_steps: int = 256
    # generate
    first_frame_size: int = 480
    condition_image: str | None = None  # a frame of another robot domain instead of our env's
    num_frames: int | None = None  # None: the video model's own (49 for 5B-I2V)
    height: int | None = None
    width: int | None = None
    num_inference_steps: int = 50
    guidance_scale: float = 6.0
    lora: str | None = None
    lora_scale: float = 1.0
    pipeline_dtype: str = "bfloat16"
    cpu_offload: bool = True  # on CUDA: keep only the running model on the GPU (fits ~24 GB)
    # file
    video_path: str | None = None


def _log(msg: str, start: float) -> None:
    print(f"[make_goals {time.monotonic() - start:7.1f}s] {msg}", flush=True)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def goal_video(cfg: GoalConfig, prompt: str, vae, start: float) -> sources.GoalVideo:
    """Runs the configured goal source."""
    if cfg.goal_source == "scripted":
        _log(f"scripted expert rollout of {cfg.task} at {cfg.resolution}px", start)
        return sources.scripted_video(cfg.task, cfg.seed, cfg.resolution, cfg.camera, cfg.max_steps)
    if cfg.goal_source == "file":
        if not cfg.video_path:
            raise ValueError("--goal_source=file needs --video_path")
        _log(f"reading {cfg.video_path}", start)
        return sources.file_video(cfg.video_path)
    if cfg.goal_source != "generate":
        raise ValueError(f"unknown goal source '{cfg.goal_source}' (one of {GOAL_SOURCES})")
    import torch

    if cfg.condition_image:
        _log(f"conditioning on {cfg.condition_image} (no Meta-World placement)", start)
        image = sources.condition_image(cfg.condition_image, cfg.first_frame_size)
        placement = None
    else:
        _log(f"rendering the first frame of {cfg.task} at {cfg.first_frame_size}px", start)
        image, placement = sources.first_frame(cfg.task, cfg.seed, cfg.first_frame_size, cfg.camera)
    _log("loading the CogVideoX image-to-video pipeline", start)
    pipe = models.load_pipeline(cfg.models, vae=vae, dtype=getattr(torch, cfg.pipeline_dtype))
    if cfg.models.mode == "pretrained":
        # The pipeline has its own VAE instance (the goal encoder is a separate float32 one), so
        # tiled decoding here cannot change the goal latent.
        pipe.vae.enable_slicing()
        pipe.vae.enable_tiling()
    if cfg.cpu_offload and cfg.device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=cfg.device)
    else:
        pipe.to(cfg.device)
    _log(f"generating: '{prompt}'", start)
    video = sources.generate_video(
        pipe,
        image,
        prompt,
        seed=cfg.seed,
        num_frames=cfg.num_frames,
        height=cfg.height,
        width=cfg.width,
        num_inference_steps=cfg.num_inference_steps,
        guidance_scale=cfg.guidance_scale,
        lora=cfg.lora,
        lora_scale=cfg.lora_scale,
    )
    video.info["first_frame_size"] = cfg.first_frame_size
    video.info["condition_image"] = (
        os.path.abspath(cfg.condition_image) if cfg.condition_image else None
    )
    video.placement = placement
    # The generated clip's pace is unknown; assume it shows the task at the scripted expert's
    # pace from this placement (the progress video reward aligns episodes with it).
    video.info["duration_steps"] = (
        None if placement is None else sources.expert_duration(cfg.task, cfg.seed)
    )
    video.info["video_model"] = (
        cfg.models.video_model if cfg.models.mode == "pretrained" else "tiny"
    )
    del pipe
    gc.collect()
    return video


def _with_default_tiny_dir(spec: models.ModelSpec, out_dir: str) -> models.ModelSpec:
    """Tiny models save their weights under <out_dir>/encoders unless told otherwise."""
    if spec.mode == "tiny" and spec.tiny_dir == models.ModelSpec.tiny_dir:
        return dataclasses.replace(spec, tiny_dir=os.path.join(out_dir, "encoders"))
    return spec


def build_goal(cfg: GoalConfig) -> dict[str, str]:
    """Makes `<out_dir>/goal.npz` and its pictures (or a bank, see `build_goal_bank`); returns
    their paths."""
    if cfg.placements > 1:
        return build_goal_bank(cfg)
    if cfg.placements < 1:
        raise ValueError(f"--placements must be >= 1, got {cfg.placements}")
    start = time.monotonic()
    if cfg.goal_source not in GOAL_SOURCES:
        raise ValueError(f"unknown goal source '{cfg.goal_source}' (one of {GOAL_SOURCES})")
    prompt = cfg.video_prompt or prompts.task_prompt(cfg.task)
    chosen = cfg.keyframe_prompts
    if chosen is None:
        chosen = prompts.keyframe_prompts(cfg.task)
    key_prompts = [p for p in chosen if p.strip()]
    if not key_prompts:
        raise ValueError("at least one non-empty keyframe prompt is needed")
    spec = _with_default_tiny_dir(cfg.models, cfg.out_dir)
    # Every encoder is loaded before the (slow) goal source runs, so missing weights fail first.
    _log(f"loading {spec.mode} VAE, OpenCLIP and DINOv3", start)
    vae = models.load_vae(spec)
    clip = models.load_clip(spec)
    dino, processor = models.load_dinov3(spec)
    s3d = models.load_s3d(spec, prompts.vocabulary())
    sd = models.load_stable_diffusion(spec)

    video = goal_video(dataclasses.replace(cfg, models=spec), prompt, vae.model, start)
    n = video.frames.shape[0]
    if n < cfg.num_sampled_frames:
        raise ValueError(
            f"the goal video has {n} frames, fewer than the {cfg.num_sampled_frames} to sample"
        )
    frames = encoding.resize_frames(video.frames, cfg.resolution)
    _log(
        f"goal video: {n} frames {video.frames.shape[1]}x{video.frames.shape[2]} -> "
        f"{cfg.resolution}x{cfg.resolution}; VAE latent of {cfg.num_sampled_frames} frames",
        start,
    )
    vae.model.to(cfg.device)
    indices, latent = encoding.sample_and_encode(
        vae.model, frames, cfg.num_sampled_frames, device=cfg.device
    )
    vae.model.to("cpu")
    _log(f"latent mean {list(latent.shape)} [T', h, w, C]; scoring keyframes with OpenCLIP", start)
    choice = keyframe.choose_keyframe(clip, frames, key_prompts)
    _log(
        f"keyframe #{choice.index} (score {choice.scores[choice.index]:.4f}); DINOv3 feature", start
    )
    feature = encoding.dinov3_feature(dino.model, processor, frames[choice.index])
    vlmrm = vlmrm_section(
        clip,
        list(cfg.vlmrm_goal_prompts or key_prompts),
        list(cfg.vlmrm_baseline_prompts),
        frames[choice.index],
        cfg.out_dir,
    )

    robo = None
    if s3d is not None:
        _log(f"RoboCLIP target ({cfg.roboclip_target}) with S3D", start)
        export = os.path.join(spec.tiny_dir if spec.mode == "tiny" else cfg.out_dir, "s3d")
        robo = roboclip_section(
            s3d[0],
            s3d[1],
            cfg.roboclip_target,
            prompts.task_prompt(cfg.task),
            video.frames,
            export,
            cfg.out_dir,
            cfg.roboclip_crop,
            cfg.roboclip_stride,
        )
    tadpole = None
    if sd is not None:
        _log("TADPoLe prompt embeddings with Stable Diffusion's text encoder", start)
        tadpole = tadpole_section(
            sd, cfg.tadpole_prompt or prompts.tadpole_prompt(cfg.task), cfg.out_dir
        )
    provenance = {
        "schema_version": SCHEMA_VERSION,
        "source": cfg.goal_source,
        "source_info": video.info,
        "video_prompt": prompt if cfg.goal_source == "generate" else None,
        # env steps the goal video spans when aligned with an episode (None: unknown)
        "duration_steps": video.info.get("duration_steps"),
        "resolution": cfg.resolution,
        "resize": encoding.RESIZE_METHOD,
        "num_source_frames": int(n),
        "source_size": [int(video.frames.shape[1]), int(video.frames.shape[2])],
        "num_sampled_frames": cfg.num_sampled_frames,
        "sampling": SAMPLING_NAME,
        "latent_layout": "THWC",
        "latent_statistic": "mean",
        "latent_scaling": "none (scaling_factor not applied)",
        "pixel_range": "[-1, 1] = uint8 / 127.5 - 1",
        "vae": {
            "id": vae.model_id,
            "path": vae.folder,
            "path_from_goal": os.path.relpath(vae.folder, cfg.out_dir),
            "hash": weights_hash(vae.folder),
        },
        "dinov3": {
            "id": dino.model_id,
            "path": dino.folder,
            "path_from_goal": os.path.relpath(dino.folder, cfg.out_dir),
            "hash": weights_hash(dino.folder),
            "feature": "pooler_output",
        },
        "clip": {
            "model": clip.name,
            "pretrained": clip.pretrained,
            "score": "mean over prompts of cosine",
            **vlmrm.provenance,
        },
        **({"roboclip": robo.provenance} if robo is not None else {}),
        **({"tadpole": tadpole.provenance} if tadpole is not None else {}),
        "models": spec.mode,
        "seed": cfg.seed,
        "model_seed": spec.seed,
        "versions": package_versions(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    goal = GoalFile(
        task=cfg.task,
        video_prompt=prompt if cfg.goal_source == "generate" else "",
        keyframe_prompts=key_prompts,
        frames=frames,
        frame_indices=indices,
        latent_mean=latent.astype(np.float32),
        clip_scores=choice.scores,
        clip_scores_per_prompt=choice.scores_per_prompt,
        keyframe_index=choice.index,
        keyframe=frames[choice.index],
        keyframe_feature=feature.astype(np.float32),
        provenance=provenance,
        placement=None if video.placement is None else np.asarray(video.placement, np.float64),
        states=None if video.states is None else np.asarray(video.states, np.float32),
        vlmrm_goal_text=vlmrm.goal_text,
        vlmrm_baseline_text=vlmrm.baseline_text,
        clip_keyframe_embedding=vlmrm.keyframe_embedding,
        roboclip_target=None if robo is None else robo.target,
        tadpole_context=None if tadpole is None else tadpole.context,
    )
    goal_path = os.path.join(cfg.out_dir, "goal.npz")
    save_goal(goal_path, goal)
    _log(f"wrote {goal_path}; drawing goal.mp4, keyframe.png, contact_sheet.png", start)
    paths = artefacts.write_artefacts(cfg.out_dir, goal, video.frames, video.fps)
    paths["goal"] = goal_path
    paths["vae"] = vae.folder
    paths["dinov3"] = dino.folder
    if clip.folder:
        paths["clip"] = clip.folder
    _log("done", start)
    return paths


BANK_FILE = "bank.json"


def build_goal_bank(cfg: GoalConfig) -> dict[str, str]:
    """N goals, one per placement: `<out_dir>/placement_<k>/goal.npz` made from env seed
    `seed + k` (each goal video starts from its own placement), sharing one encoder folder, and
    `<out_dir>/bank.json` listing them. Training with `--goal_file=<out_dir>/bank.json` pairs
    each episode with the goal of its placement."""
    if cfg.goal_source == "file" or cfg.condition_image:
        raise ValueError(
            "--placements > 1 needs goals made in our env (scripted, or generated from the env's "
            "first frame); a file or a foreign condition image has no placements"
        )
    spec = _with_default_tiny_dir(cfg.models, cfg.out_dir)
    goals, paths = [], {}
    for k in range(cfg.placements):
        sub = dataclasses.replace(
            cfg,
            placements=1,
            seed=cfg.seed + k,
            models=spec,
            out_dir=os.path.join(cfg.out_dir, f"placement_{k:02d}"),
        )
        print(f"[make_goals] placement {k + 1}/{cfg.placements} (env seed {sub.seed})", flush=True)
        made = build_goal(sub)
        goals.append(os.path.relpath(made["goal"], cfg.out_dir))
        paths[f"goal_{k:02d}"] = made["goal"]
    bank_path = os.path.join(cfg.out_dir, BANK_FILE)
    atomic_write_json(bank_path, {"task": cfg.task, "goals": goals})
    paths["bank"] = bank_path
    return paths
