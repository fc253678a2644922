"""Offline stage: makes a task's goal file (goal.npz) and the pictures to check it.

    python preprocessing/make_goals.py --flagfile=configs/goals_quickstart.cfg
    python preprocessing/make_goals.py --flagfile=configs/goals_pick_place.cfg --device=cuda

Writes <out_dir>/goal.npz (schema: genreward_jax/goals.py), goal.mp4, keyframe.png,
contact_sheet.png, and in tiny mode the VAE and DINOv3 weights under <out_dir>/encoders/.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from genreward_jax.goals import GoalFileError  # noqa: E402
from preprocessing import encoding, model_flags, prompts  # noqa: E402
from preprocessing.goal_builder import GOAL_SOURCES, GoalConfig, build_goal  # noqa: E402
from preprocessing.models import ModelUnavailableError  # noqa: E402

_TASK = flags.DEFINE_string("task", "pick-place-v3", "Meta-World task id (or a paper task name).")
_SOURCE = flags.DEFINE_enum(
    "goal_source", "scripted", list(GOAL_SOURCES), "Where the goal video comes from."
)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder (default goals/<task>).")
_RESOLUTION = flags.DEFINE_integer(
    "resolution",
    64,
    "Square size S the online stage encodes agent frames at (VAE and DINOv3 input).",
)
_NUM_SAMPLED = flags.DEFINE_integer(
    "num_sampled_frames",
    encoding.DEFAULT_NUM_SAMPLED_FRAMES,
    "Frames sampled uniformly for the VAE latent (17 = 4k+1 by default; the paper used 16).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Env seed (first frame, rollout) and generation seed.")
_VIDEO_PROMPT = flags.DEFINE_string(
    "video_prompt", None, "Generation prompt (default: the task's)."
)
_KEYFRAME_PROMPTS = flags.DEFINE_multi_string(
    "keyframe_prompt",
    None,
    "Keyframe prompt(s); repeat the flag to average several. Unset: --keyframe_prompt_set.",
)
_KEYFRAME_SET = flags.DEFINE_enum(
    "keyframe_prompt_set",
    "task",
    list(prompts.KEYFRAME_PROMPT_SETS),
    "Keyframe prompts when --keyframe_prompt is unset: the task's description of its solved "
    "state (Eq. 6) or the release's five generic grasp prompts.",
)
_VLMRM_GOAL_PROMPTS = flags.DEFINE_multi_string(
    "vlmrm_goal_prompt",
    None,
    "VLM-RM baseline: a goal prompt whose open_clip text embedding the goal stores (repeatable; "
    "default: the keyframe prompts).",
)
_VLMRM_BASELINE_PROMPTS = flags.DEFINE_multi_string(
    "vlmrm_baseline_prompt",
    list(prompts.VLMRM_BASELINE_PROMPTS),
    "VLM-RM baseline: a baseline prompt, what every frame shows solved or not (repeatable).",
)
_ROBOCLIP_TARGET = flags.DEFINE_enum(
    "roboclip_target",
    "text",
    ["text", "goal_video"],
    "RoboCLIP baseline: what its S3D target embeds, the task's video prompt or the goal video "
    "(cropped and strided as the online episode videos).",
)
_TADPOLE_PROMPT = flags.DEFINE_string(
    "tadpole_prompt",
    None,
    "TADPoLe baseline: the prompt whose Stable Diffusion text embedding the goal stores "
    "(default: the task's, preprocessing/prompts.py TADPOLE_PROMPTS).",
)
_ROBOCLIP_CROP = flags.DEFINE_integer(
    "roboclip_crop", 250, "RoboCLIP: centre crop of its frames (the release: 250).", lower_bound=2
)
_PLACEMENTS = flags.DEFINE_integer(
    "placements",
    1,
    "Goals to make, one per object/goal placement (env seeds --seed, --seed+1, ...). Above 1 "
    "writes <out_dir>/placement_<k>/goal.npz and <out_dir>/bank.json (train with "
    "--goal_file=<out_dir>/bank.json).",
    lower_bound=1,
)
_CONDITION_IMAGE = flags.DEFINE_string(
    "condition_image",
    None,
    "generate: condition on this image (a frame of RT-1, Bridge, RLBench, ...) instead of the "
    "env's first frame; the goal then has no Meta-World placement.",
)
_CAMERA = flags.DEFINE_string("camera", "corner", "Env camera for rendered frames.")
_DEVICE = flags.DEFINE_string("device", "cpu", "torch device: cpu or cuda.")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 256, "scripted: episode time limit.")
_FIRST_FRAME_SIZE = flags.DEFINE_integer(
    "first_frame_size", 480, "generate: render size of the conditioning first frame."
)
_NUM_FRAMES = flags.DEFINE_integer(
    "num_frames", None, "generate: frames (default the model's; 49)."
)
_HEIGHT = flags.DEFINE_integer("height", None, "generate: height (default the model's; 480).")
_WIDTH = flags.DEFINE_integer("width", None, "generate: width (default the model's; 720).")
_STEPS = flags.DEFINE_integer("num_inference_steps", 50, "generate: denoising steps.")
_GUIDANCE = flags.DEFINE_float("guidance_scale", 6.0, "generate: classifier-free guidance scale.")
_LORA = flags.DEFINE_string("lora", None, "generate: LoRA folder or file from finetune.py.")
_LORA_SCALE = flags.DEFINE_float("lora_scale", 1.0, "generate: LoRA strength.")
_DTYPE = flags.DEFINE_enum(
    "pipeline_dtype",
    "bfloat16",
    ["bfloat16", "float16", "float32"],
    "generate: dtype of the pretrained pipeline (the goal VAE encode is always float32).",
)
_CPU_OFFLOAD = flags.DEFINE_bool(
    "cpu_offload", True, "generate on CUDA: model CPU offload (fits a ~24 GB GPU; slower)."
)
_VIDEO_PATH = flags.DEFINE_string("video_path", None, "file: mp4/gif or folder of frames.")


def config_from_flags() -> GoalConfig:
    from genreward_jax.envs.tasks import resolve_task

    task = resolve_task(_TASK.value)
    return GoalConfig(
        task=task,
        goal_source=_SOURCE.value,
        out_dir=_OUT_DIR.value or os.path.join("goals", task),
        models=model_flags.model_spec_from_flags(),
        resolution=_RESOLUTION.value,
        num_sampled_frames=_NUM_SAMPLED.value,
        seed=_SEED.value,
        video_prompt=_VIDEO_PROMPT.value,
        keyframe_prompts=(
            tuple(_KEYFRAME_PROMPTS.value)
            if _KEYFRAME_PROMPTS.value
            else prompts.keyframe_prompts(task, _KEYFRAME_SET.value)
        ),
        vlmrm_goal_prompts=tuple(_VLMRM_GOAL_PROMPTS.value or ()) or None,
        vlmrm_baseline_prompts=tuple(_VLMRM_BASELINE_PROMPTS.value),
        roboclip_target=_ROBOCLIP_TARGET.value,
        roboclip_crop=_ROBOCLIP_CROP.value,
        tadpole_prompt=_TADPOLE_PROMPT.value,
        placements=_PLACEMENTS.value,
        condition_image=_CONDITION_IMAGE.value,
        camera=_CAMERA.value,
        device=_DEVICE.value,
        max_steps=_MAX_STEPS.value,
        first_frame_size=_FIRST_FRAME_SIZE.value,
        num_frames=_NUM_FRAMES.value,
        height=_HEIGHT.value,
        width=_WIDTH.value,
        num_inference_steps=_STEPS.value,
        guidance_scale=_GUIDANCE.value,
        lora=_LORA.value,
        lora_scale=_LORA_SCALE.value,
        pipeline_dtype=_DTYPE.value,
        cpu_offload=_CPU_OFFLOAD.value,
        video_path=_VIDEO_PATH.value,
    )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        cfg = config_from_flags()
        os.makedirs(cfg.out_dir, exist_ok=True)
        with open(os.path.join(cfg.out_dir, "flags.txt"), "w") as f:
            f.write(flags.FLAGS.flags_into_string())
        paths = build_goal(cfg)
    except (ModelUnavailableError, GoalFileError, FileNotFoundError, ValueError) as err:
        sys.exit(f"make_goals: error: {err}")
    for name, path in paths.items():
        print(f"{name:14s} {path}")


if __name__ == "__main__":
    app.run(main)
