"""Where a goal video comes from: CogVideoX image-to-video, the scripted expert, or a user's file.

Each source returns a GoalVideo at its own resolution; encoding.py resizes to the online stage's.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclasses.dataclass
class GoalVideo:
    frames: np.ndarray  # [N, H, W, 3] uint8, upright
    fps: float
    info: dict[str, Any]  # source-specific provenance
    placement: np.ndarray | None = None  # [R] env placement the video starts from, if known
    states: np.ndarray | None = None  # [N, 39] env state per frame (scripted rollouts)


@dataclasses.dataclass
class ExpertRollout:
    frames: np.ndarray  # [N, S, S, 3] uint8
    states: np.ndarray  # [N, 39] float32, the env state at each frame
    placement: np.ndarray  # [R] the episode's object/goal placement
    succeeded: bool


# ---------------------------------------------------------------------------------------------
# Our env: first frames (for generation) and scripted-expert rollouts (oracle goals, demos).


def load_triton_before_rendering() -> None:
    """Imports torch._dynamo (which loads triton, bundling its own LLVM) before MuJoCo's EGL
    context loads Mesa's llvmpipe (also LLVM). In the other order the process segfaults as soon as
    diffusers or transformers import torch._dynamo after a frame was rendered on a CPU machine."""
    import torch._dynamo  # noqa: F401


def _make_env(
    task: str, seed: int, size: int, camera: str, time_limit: int, full_quality: bool = False
):
    from genreward_jax.envs import EnvConfig, MetaWorldEnv

    load_triton_before_rendering()
    config = EnvConfig(
        task=task,
        seed=seed,
        camera=camera,
        size=size,
        time_limit=time_limit,
        full_quality=full_quality,
    )
    return MetaWorldEnv(config)


def first_frame(
    task: str, seed: int, size: int, camera: str = "corner"
) -> tuple[np.ndarray, np.ndarray]:
    """The task's first observation rendered by our env, upright ([S, S, 3] uint8), and the
    placement it shows ([R]), so training can start episodes in the generated video's scene.

    Full render quality (multisampling, shadows): the video model should see a natural image.
    """
    env = _make_env(task, seed, size, camera, time_limit=16, full_quality=True)
    try:
        return np.asarray(env.reset()["image"]), env.placement
    finally:
        env.close()


def condition_image(path: str, size: int) -> np.ndarray:
    """A user's conditioning frame (e.g. from RT-1, Bridge or RLBench) as [S, S, 3] uint8:
    centre-cropped to a square and resized, like our env's first frame."""
    import imageio.v3 as iio
    from PIL import Image

    if not os.path.isfile(path):
        raise FileNotFoundError(f"--condition_image {path} does not exist")
    image = _as_rgb(iio.imread(path))
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = Image.fromarray(image[top : top + side, left : left + side])
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC))


def _act(policy, state: np.ndarray) -> np.ndarray:
    get_action = getattr(policy, "get_action", policy)
    return np.asarray(get_action(state), dtype=np.float32)


def expert_rollout(
    task: str,
    seed: int,
    size: int,
    camera: str = "corner",
    max_steps: int = 256,
    steps_after_success: int = 8,
) -> ExpertRollout:
    """One scripted-expert episode in our env (frames, states, placement, success).

    Stops `steps_after_success` steps after the first success so the video ends on the solved
    scene, or at the time limit.
    """
    from genreward_jax.envs.tasks import expert_policy

    env = _make_env(task, seed, size, camera, time_limit=max_steps)
    policy = expert_policy(task)
    try:
        obs = env.reset()
        placement = env.placement
        frames = [np.asarray(obs["image"])]
        states = [np.asarray(obs["state"], np.float32)]
        success_at = None
        while not bool(obs["is_last"]):
            obs = env.step(_act(policy, np.asarray(obs["state"])))
            frames.append(np.asarray(obs["image"]))
            states.append(np.asarray(obs["state"], np.float32))
            if success_at is None and bool(obs["success"]):
                success_at = len(frames)
            if success_at is not None and len(frames) >= success_at + steps_after_success:
                break
    finally:
        env.close()
    return ExpertRollout(np.stack(frames), np.stack(states), placement, success_at is not None)


def expert_duration(task: str, seed: int, max_steps: int = 256) -> int | None:
    """Env steps a scripted goal video of this placement would span (the expert's steps to
    success plus the frames kept after it): the pace a generated goal video of the task is
    assumed to show when aligned with an episode. None if the expert never succeeds. Rendered
    small: only the length of the same rollout and stop rule counts."""
    rollout = expert_rollout(task, seed, size=16, max_steps=max_steps)
    return len(rollout.frames) - 1 if rollout.succeeded else None


def scripted_video(task: str, seed: int, size: int, camera: str, max_steps: int) -> GoalVideo:
    rollout = expert_rollout(task, seed, size, camera, max_steps)
    info = {
        "task": task,
        "env_seed": seed,
        "camera": camera,
        "render_size": size,
        "expert_succeeded": rollout.succeeded,
        "duration_steps": int(len(rollout.frames) - 1),
    }
    return GoalVideo(rollout.frames, 30.0, info, rollout.placement, rollout.states)


# ---------------------------------------------------------------------------------------------
# CogVideoX image-to-video.


def check_generation_size(transformer_config, height: int, width: int, num_frames: int) -> None:
    """Raises ValueError for sizes the transformer cannot generate.

    CogVideoX-5B-I2V (1.0) has learned positional embeddings fixed to its sample size and frame
    count (480x720, 49 frames); CogVideoX 1.5 accepts others that fit its patching.
    """
    cfg = transformer_config
    want_h, want_w = cfg.sample_height * 8, cfg.sample_width * 8
    if cfg.use_learned_positional_embeddings and (
        (height, width, num_frames) != (want_h, want_w, cfg.sample_frames)
    ):
        raise ValueError(
            f"this CogVideoX transformer has learned positional embeddings and only generates "
            f"{want_h}x{want_w} with {cfg.sample_frames} frames; got {height}x{width} with "
            f"{num_frames} frames"
        )
    if height % 16 or width % 16 or (num_frames - 1) % 4:
        raise ValueError(
            f"CogVideoX needs height and width divisible by 16 and 4k+1 frames; "
            f"got {height}x{width} with {num_frames} frames"
        )


def generate_video(
    pipe,
    image: np.ndarray,
    prompt: str,
    *,
    seed: int,
    num_frames: int | None = None,
    height: int | None = None,
    width: int | None = None,
    num_inference_steps: int = 50,
    guidance_scale: float = 6.0,
    lora: str | None = None,
    lora_scale: float = 1.0,
) -> GoalVideo:
    """CogVideoX I2V from one upright [H, W, 3] uint8 image; sizes default to the model's own."""
    import torch
    from PIL import Image

    cfg = pipe.transformer.config
    height = height or cfg.sample_height * 8
    width = width or cfg.sample_width * 8
    num_frames = num_frames or cfg.sample_frames
    check_generation_size(cfg, height, width, num_frames)
    if lora:
        load_lora(pipe, lora, lora_scale)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    output = pipe(
        image=Image.fromarray(image),
        prompt=prompt,
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        use_dynamic_cfg=True,
        generator=generator,
        output_type="np",
        max_sequence_length=cfg.max_text_seq_length,
    )
    frames = (np.clip(output.frames[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    info = {
        "height": height,
        "width": width,
        "num_frames": num_frames,
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "use_dynamic_cfg": True,
        "scheduler": type(pipe.scheduler).__name__,
        "generator_seed": seed,
        "lora": os.path.abspath(lora) if lora else None,
        "lora_scale": lora_scale if lora else None,
    }
    return GoalVideo(frames, fps=8.0, info=info)


def load_lora(pipe, lora: str, scale: float = 1.0) -> None:
    """Loads a LoRA written by preprocessing/finetune.py (or any diffusers CogVideoX LoRA)."""
    if not os.path.exists(lora):
        raise FileNotFoundError(f"LoRA weights not found: {lora}")
    pipe.load_lora_weights(lora, adapter_name="goal")
    pipe.set_adapters(["goal"], [scale])


# ---------------------------------------------------------------------------------------------
# A user's video file or folder of frames.


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=-1)
    if frame.shape[-1] == 4:
        frame = frame[..., :3]
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be 8-bit, got {frame.dtype}")
    return frame


def file_video(path: str) -> GoalVideo:
    """Reads an mp4/gif/... video or a folder of image frames (sorted naturally by file name)."""
    import imageio.v3 as iio

    if os.path.isdir(path):
        names = sorted(
            (n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS)), key=_natural_key
        )
        if not names:
            raise ValueError(f"folder {path} holds no image frames ({', '.join(IMAGE_EXTENSIONS)})")
        frames = [_as_rgb(iio.imread(os.path.join(path, n))) for n in names]
        fps = 8.0
    elif os.path.isfile(path):
        if not path.lower().endswith(VIDEO_EXTENSIONS):
            raise ValueError(f"{path}: expected one of {', '.join(VIDEO_EXTENSIONS)} or a folder")
        frames = [_as_rgb(f) for f in iio.imiter(path)]
        try:
            fps = float(iio.immeta(path).get("fps", 8.0))
        except (OSError, ValueError, KeyError):
            fps = 8.0
    else:
        raise FileNotFoundError(f"goal video not found: {path}")
    if not frames:
        raise ValueError(f"{path}: no frames")
    if len({f.shape for f in frames}) != 1:
        raise ValueError(f"{path}: frames differ in size")
    return GoalVideo(np.stack(frames), fps=fps, info={"path": os.path.abspath(path)})
