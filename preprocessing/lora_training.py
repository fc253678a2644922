"""LoRA finetuning of the CogVideoX image-to-video transformer (the body of finetune.py).

Recipe (diffusers' CogVideoX LoRA example and THUDM's CogVideo finetuning code): LoRA on
to_q/to_k/to_v/to_out.0; v-prediction with the zero-SNR DPM scheduler, trained as the x0 error
weighted by 1/(1 - alpha_bar_t); the conditioning image is the video's first frame plus small
noise (sigma = exp(N(-3, 0.5))), encoded and concatenated on the channel axis, and dropped (zeroed)
with probability 0.05; AdamW betas (0.9, 0.95), constant lr 1e-4, gradient clipping at 1.

Dataset: a folder with prompts.txt and videos.txt (one line per clip; video paths relative to the
folder), as written by collect_demos.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from genreward_jax.goals import uniform_indices
from preprocessing import models, sources

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclasses.dataclass
class FinetuneConfig:
    data_dir: str
    out_dir: str
    models: models.ModelSpec = dataclasses.field(default_factory=models.ModelSpec)
    max_steps: int = 1000
    batch_size: int = 1
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    rank: int = 64
    alpha: float = 64.0
    image_dropout: float = 0.05
    noise_log_sigma_mean: float = -3.0
    noise_log_sigma_std: float = 0.5
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"  # frozen pretrained weights (tiny stays float32); LoRA trains in float32
    gradient_checkpointing: bool = False
    eval_timesteps: tuple[int, ...] = (100, 300, 500, 700, 900)  # fixed-noise loss before/after


# ---------------------------------------------------------------------------------------------
# Data.


def read_dataset(folder: str) -> list[tuple[str, str]]:
    """[(prompt, absolute video path)] from prompts.txt + videos.txt, with clear errors."""
    files = {name: os.path.join(folder, f"{name}.txt") for name in ("prompts", "videos")}
    for path in files.values():
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path} not found (a dataset folder holds prompts.txt and "
                "videos.txt, see preprocessing/collect_demos.py)"
            )
    lines = {}
    for name, path in files.items():
        with open(path) as f:
            lines[name] = [line.strip() for line in f if line.strip()]
    if len(lines["prompts"]) != len(lines["videos"]) or not lines["prompts"]:
        raise ValueError(
            f"{folder}: prompts.txt has {len(lines['prompts'])} lines and videos.txt "
            f"{len(lines['videos'])}; they must match and be non-empty"
        )
    clips = [
        (p, os.path.join(folder, v)) for p, v in zip(lines["prompts"], lines["videos"], strict=True)
    ]
    for _, path in clips:
        if not os.path.exists(path):
            raise FileNotFoundError(f"video listed in {files['videos']} not found: {path}")
    return clips


def load_clip_pixels(path: str, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Video -> [3, F, H, W] float32 in [-1, 1]: F frames sampled uniformly, resized to H x W."""
    frames = sources.file_video(path).frames
    frames = frames[uniform_indices(frames.shape[0], num_frames)]
    resized = np.stack(
        [
            np.asarray(Image.fromarray(f).resize((width, height), Image.Resampling.BILINEAR))
            for f in frames
        ]
    )
    return torch.from_numpy(resized).float().permute(3, 0, 1, 2) / 127.5 - 1.0


@dataclasses.dataclass
class EncodedClip:
    latent_mean: torch.Tensor  # [C, F', h, w] VAE posterior mean (unscaled)
    latent_std: torch.Tensor  # [C, F', h, w]
    first_frame: torch.Tensor  # [3, 1, H, W] in [-1, 1]
    prompt_embeds: torch.Tensor  # [L, D] T5 embedding


@torch.no_grad()
def encode_dataset(pipe, clips: list[tuple[str, str]], device: str) -> list[EncodedClip]:
    """Encodes every clip once (VAE posterior and T5 prompt): both are frozen."""
    cfg = pipe.transformer.config
    height, width, num_frames = cfg.sample_height * 8, cfg.sample_width * 8, cfg.sample_frames
    sources.check_generation_size(cfg, height, width, num_frames)
    encoded = []
    for prompt, path in tqdm(clips, desc="encoding clips", unit="clip"):
        video = load_clip_pixels(path, num_frames, height, width)
        posterior = pipe.vae.encode(video[None].to(device, pipe.vae.dtype)).latent_dist
        embeds, _ = pipe.encode_prompt(
            prompt,
            do_classifier_free_guidance=False,
            device=device,
            max_sequence_length=cfg.max_text_seq_length,
        )
        encoded.append(EncodedClip(posterior.mean[0], posterior.std[0], video[:, :1], embeds[0]))
    return encoded


# ---------------------------------------------------------------------------------------------
# Loss.


def training_loss(
    pipe,
    batch: list[EncodedClip],
    generator: torch.Generator,
    cfg: FinetuneConfig,
    timesteps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted x0 error of the v-prediction model on one batch, all randomness from `generator`.

    `timesteps` fixes t (evaluation); otherwise t ~ U{0, ..., T-1}.
    """
    vae, transformer, scheduler = pipe.vae, pipe.transformer, pipe.scheduler
    device, dtype = cfg.device, transformer.dtype
    scale = vae.config.scaling_factor

    def randn(shape):
        return torch.randn(shape, generator=generator).to(device)

    mean = torch.stack([c.latent_mean for c in batch])
    std = torch.stack([c.latent_std for c in batch])
    latents = ((mean + std * randn(mean.shape)) * scale).permute(0, 2, 1, 3, 4)  # [B, F', C, h, w]
    first = torch.stack([c.first_frame for c in batch]).to(device)  # [B, 3, 1, H, W]
    log_sigma = cfg.noise_log_sigma_mean + cfg.noise_log_sigma_std * randn((len(batch),))
    noisy_first = first + torch.exp(log_sigma)[:, None, None, None, None] * randn(first.shape)
    with torch.no_grad():
        posterior = vae.encode(noisy_first.to(vae.dtype)).latent_dist
        image_latent = posterior.mean + posterior.std * randn(posterior.mean.shape)
    image_latent = (image_latent * scale).permute(0, 2, 1, 3, 4)  # [B, 1, C, h, w]
    keep = (torch.rand((len(batch),), generator=generator) >= cfg.image_dropout).to(device)
    image_latent = image_latent * keep[:, None, None, None, None].to(image_latent.dtype)
    padding = torch.zeros_like(latents[:, 1:])
    image_latents = torch.cat([image_latent, padding], dim=1)

    if timesteps is None:
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (len(batch),), generator=generator
        )
    timesteps = timesteps.to(device).long()
    noise = randn(latents.shape)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    model_input = torch.cat([noisy, image_latents], dim=2).to(dtype)
    height, width = first.shape[-2:]
    rotary = None
    if transformer.config.use_rotary_positional_embeddings:
        rotary = pipe._prepare_rotary_positional_embeddings(height, width, latents.shape[1], device)
    ofs = None
    if transformer.config.ofs_embed_dim is not None:
        ofs = model_input.new_full((1,), fill_value=2.0)
    prompt_embeds = torch.stack([c.prompt_embeds for c in batch]).to(device, dtype)
    velocity = transformer(
        hidden_states=model_input,
        encoder_hidden_states=prompt_embeds,
        timestep=timesteps,
        ofs=ofs,
        image_rotary_emb=rotary,
        return_dict=False,
    )[0].float()
    x0_pred = scheduler.get_velocity(velocity, noisy.float(), timesteps)
    alphas = scheduler.alphas_cumprod.to(device)[timesteps]
    weights = (1.0 / (1.0 - alphas)).view(-1, 1, 1, 1, 1)
    per_sample = (weights * (x0_pred - latents.float()) ** 2).flatten(1).mean(1)
    return per_sample.mean()


def evaluation_loss(
    pipe,
    encoded: list[EncodedClip],
    cfg: FinetuneConfig,
    seed: int = 1234,
) -> float:
    """Deterministic loss (fixed noise, fixed t, no image dropout): comparable across training.

    NaN when cfg.eval_timesteps is empty (evaluation switched off).
    """
    if not cfg.eval_timesteps:
        return float("nan")
    eval_cfg = dataclasses.replace(cfg, image_dropout=0.0)
    total = 0.0
    timesteps = cfg.eval_timesteps
    with torch.no_grad():
        for t in timesteps:
            generator = torch.Generator().manual_seed(seed + t)
            for clip in encoded:
                total += float(training_loss(pipe, [clip], generator, eval_cfg, torch.tensor([t])))
    return total / (len(timesteps) * len(encoded))


# ---------------------------------------------------------------------------------------------
# LoRA, checkpoints.


def add_lora(transformer, rank: int, alpha: float) -> list[torch.nn.Parameter]:
    """Freezes the transformer, adds LoRA adapters, returns the (float32) trainable parameters."""
    from peft import LoraConfig

    transformer.requires_grad_(False)
    transformer.add_adapter(
        LoraConfig(
            r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=list(LORA_TARGETS)
        )
    )
    params = [p for p in transformer.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    return params


def lora_state(transformer) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(transformer)


def save_lora(pipe_cls, folder: str, transformer) -> None:
    """Writes pytorch_lora_weights.safetensors (with the LoRA config as metadata) in `folder`."""
    pipe_cls.save_lora_weights(
        folder,
        transformer_lora_layers=lora_state(transformer),
        transformer_lora_adapter_metadata=transformer.peft_config["default"].to_dict(),
    )


def load_lora_into_adapter(pipe_cls, folder: str, transformer) -> None:
    """Restores saved LoRA weights into the transformer's existing 'default' adapter."""
    from peft import set_peft_model_state_dict

    state = pipe_cls.lora_state_dict(folder)
    state = state[0] if isinstance(state, tuple) else state
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    result = set_peft_model_state_dict(transformer, state, adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"{folder}: LoRA checkpoint has unexpected keys {unexpected[:4]}")


def latest_checkpoint(out_dir: str) -> tuple[int, str] | None:
    if not os.path.isdir(out_dir):
        return None
    found = [
        (int(m.group(1)), os.path.join(out_dir, n))
        for n in os.listdir(out_dir)
        if (m := _CHECKPOINT.match(n))
    ]
    return max(found) if found else None


def save_checkpoint(out_dir: str, step: int, pipe, optimizer, generator, losses) -> str:
    """checkpoint-<step>/: LoRA weights + optimizer, step, RNG, loss history; written atomically."""
    final = os.path.join(out_dir, f"checkpoint-{step}")
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=".checkpoint-tmp-")
    try:
        save_lora(type(pipe), tmp, pipe.transformer)
        torch.save(
            {
                "step": step,
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "losses": losses,
            },
            os.path.join(tmp, "training_state.pt"),
        )
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    return final


def prune_checkpoints(out_dir: str, keep: int) -> None:
    found = sorted(int(m.group(1)) for n in os.listdir(out_dir) if (m := _CHECKPOINT.match(n)))
    for step in found[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(out_dir, f"checkpoint-{step}"))


# ---------------------------------------------------------------------------------------------
# Training loop.


def finetune(cfg: FinetuneConfig) -> dict:
    """Trains (or resumes) to cfg.max_steps; writes <out_dir>/pytorch_lora_weights.safetensors.

    Returns {"lora": folder, "losses": per-step training losses, "eval_before", "eval_after"}.
    """
    start = time.monotonic()
    os.makedirs(cfg.out_dir, exist_ok=True)
    clips = read_dataset(cfg.data_dir)
    torch.manual_seed(cfg.seed)
    pipe = models.load_pipeline(cfg.models, dtype=getattr(torch, cfg.dtype))
    pipe.to(cfg.device)
    encoded = encode_dataset(pipe, clips, cfg.device)
    pipe.text_encoder.to("cpu")  # prompts are encoded; free accelerator memory
    params = add_lora(pipe.transformer, cfg.rank, cfg.alpha)
    if cfg.gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    step = 0
    resumed = latest_checkpoint(cfg.out_dir)
    if resumed:
        step, folder = resumed
        load_lora_into_adapter(type(pipe), folder, pipe.transformer)
        state = torch.load(os.path.join(folder, "training_state.pt"), weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        losses = list(state["losses"])
        print(f"[finetune] resumed from {folder} at step {step}", flush=True)
    eval_before = evaluation_loss(pipe, encoded, cfg)
    metrics_path = os.path.join(cfg.out_dir, "metrics.jsonl")
    pipe.transformer.train()
    bar = tqdm(total=cfg.max_steps, initial=step, desc="LoRA finetune", unit="step")
    with open(metrics_path, "a") as metrics:
        while step < cfg.max_steps:
            picks = torch.randint(0, len(encoded), (cfg.batch_size,), generator=generator)
            loss = training_loss(pipe, [encoded[i] for i in picks.tolist()], generator, cfg)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            step += 1
            losses.append(loss.item())
            metrics.write(
                json.dumps({"step": step, "loss": loss.item(), "grad_norm": float(grad_norm)})
                + "\n"
            )
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                metrics.flush()
                save_checkpoint(cfg.out_dir, step, pipe, optimizer, generator, losses)
                prune_checkpoints(cfg.out_dir, cfg.keep_checkpoints)
    bar.close()
    pipe.transformer.eval()
    eval_after = evaluation_loss(pipe, encoded, cfg)
    save_lora(type(pipe), cfg.out_dir, pipe.transformer)
    print(
        f"[finetune {time.monotonic() - start:7.1f}s] step {step}: eval loss "
        f"{eval_before:.4f} -> {eval_after:.4f}; LoRA in {cfg.out_dir}/{LORA_WEIGHTS}",
        flush=True,
    )
    return {
        "lora": cfg.out_dir,
        "losses": losses,
        "eval_before": eval_before,
        "eval_after": eval_after,
    }
