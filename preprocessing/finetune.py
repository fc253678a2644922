"""LoRA finetuning of the CogVideoX image-to-video transformer on a prompts.txt + videos.txt folder.

    python preprocessing/collect_demos.py --tasks=pick-place-v3 --episodes=16 --out_dir=data/demos
    python preprocessing/finetune.py --models=pretrained --data_dir=data/demos \
        --out_dir=runs/lora_pick_place --device=cuda --dtype=bfloat16 --gradient_checkpointing
    python preprocessing/make_goals.py --flagfile=configs/goals_pick_place.cfg \
        --lora=runs/lora_pick_place

Re-running with the same --out_dir resumes from its latest checkpoint-<step>/. The recipe is in
preprocessing/lora_training.py.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from preprocessing import model_flags  # noqa: E402
from preprocessing.lora_training import FinetuneConfig, finetune  # noqa: E402
from preprocessing.models import ModelUnavailableError  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with prompts.txt and videos.txt.")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Checkpoints and the final LoRA go here.")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 1000, "Total optimizer steps (resume included).")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Clips per step.")
_LR = flags.DEFINE_float("lr", 1e-4, "Constant learning rate.")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 1e-4, "AdamW weight decay.")
_RANK = flags.DEFINE_integer("rank", 64, "LoRA rank.")
_ALPHA = flags.DEFINE_float("alpha", 64.0, "LoRA alpha (scale alpha/rank).")
_DROPOUT = flags.DEFINE_float("image_dropout", 0.05, "Probability of dropping the image latent.")
_CKPT_EVERY = flags.DEFINE_integer("checkpoint_every", 250, "Steps between checkpoints.")
_KEEP = flags.DEFINE_integer("keep_checkpoints", 2, "Checkpoints kept.")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed (data order, noise, timesteps).")
_DEVICE = flags.DEFINE_string("device", "cpu", "torch device.")
_DTYPE = flags.DEFINE_enum(
    "dtype",
    "float32",
    ["float32", "bfloat16", "float16"],
    "dtype of the frozen pretrained weights (tiny models stay float32; LoRA trains in float32).",
)
_GRAD_CKPT = flags.DEFINE_bool("gradient_checkpointing", False, "Trade compute for memory.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _DATA_DIR.value or not _OUT_DIR.value:
        raise app.UsageError("--data_dir and --out_dir are required")
    cfg = FinetuneConfig(
        data_dir=_DATA_DIR.value,
        out_dir=_OUT_DIR.value,
        models=model_flags.model_spec_from_flags(),
        max_steps=_MAX_STEPS.value,
        batch_size=_BATCH.value,
        lr=_LR.value,
        weight_decay=_WEIGHT_DECAY.value,
        rank=_RANK.value,
        alpha=_ALPHA.value,
        image_dropout=_DROPOUT.value,
        checkpoint_every=_CKPT_EVERY.value,
        keep_checkpoints=_KEEP.value,
        seed=_SEED.value,
        device=_DEVICE.value,
        dtype=_DTYPE.value,
        gradient_checkpointing=_GRAD_CKPT.value,
    )
    os.makedirs(cfg.out_dir, exist_ok=True)
    with open(os.path.join(cfg.out_dir, "flags.txt"), "w") as f:
        f.write(flags.FLAGS.flags_into_string())
    try:
        finetune(cfg)
    except (ModelUnavailableError, FileNotFoundError, ValueError) as err:
        sys.exit(f"finetune: error: {err}")


if __name__ == "__main__":
    app.run(main)
