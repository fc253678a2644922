"""TADPoLe's reward (Luo et al., NeurIPS 2024): how much a text prompt changes a frozen
text-to-image diffusion model's noise prediction on the agent's frame, and whether it helps.

Per frame (the release, brown-palm/tadpole ``src/utils.py`` ``TADPoLe``, ``src/train_mw.py``):
  1. resize to the model's resolution (bilinear, ``F.interpolate(align_corners=False)``), map to
     [-1, 1], encode with Stable Diffusion's VAE, draw a latent from its posterior and multiply by
     the VAE's scaling factor;
  2. noise it to level t (one t per episode, t ~ U[t_base, t_base + range); fresh noise ε every
     step): x_t = √ᾱ_t·x + √(1 − ᾱ_t)·ε;
  3. predict the noise with the prompt, ε_text, and with the empty prompt, ε_uncond (one UNet call
     of batch 2);
  4. reward = symlog(w_align·mean((ε_text − ε_uncond)²)) +
     symlog(w_recon·(mean((ε_uncond − ε)²) − mean((ε_text − ε)²))), means over the latent's
     elements (the release's ``.mean([1, 2, 3])``, not sums).
The first term says the prompt matters for this frame (alignment), the second that it makes the
denoising better (the frame looks more like the prompt than like an arbitrary image).

Release values: w_align 2000, w_recon 200, t_base 400 by default and 500 in its Meta-World command
(README), range 100, 448-pixel renders from ``corner2``, and 2 x success added to each step's
reward on Meta-World (``sparse_scale``). Two release details are kept selectable, not default:
``pixel_range='release'`` reproduces the image variant feeding 0-255 values to ``2x − 1`` (its
video variant divides by 255 first; the paper means [-1, 1]); the success bonus is a flag.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

f32 = jnp.float32

RELEASE_ALIGN_SCALE = 2000.0
RELEASE_RECON_SCALE = 200.0
RELEASE_NOISE_BASE = 500  # Meta-World command of the release README (its default config: 400)
RELEASE_NOISE_RANGE = 100
RELEASE_RENDER = 448  # Meta-World render side in src/train_mw.py
RELEASE_SUCCESS_BONUS = 2.0  # cfg.sparse_scale
PIXEL_RANGES = ("unit", "release")  # frames/255 -> [-1, 1]; the release's image variant: 0-255


def alphas_cumprod(scheduler_config: dict[str, Any]) -> np.ndarray:
    """ᾱ_t for t = 0..T−1 from a diffusers scheduler config (DDPM/DDIM/PNDM share the betas),
    float32 as diffusers keeps them."""
    steps = int(scheduler_config.get("num_train_timesteps", 1000))
    start = float(scheduler_config.get("beta_start", 0.0001))
    end = float(scheduler_config.get("beta_end", 0.02))
    schedule = scheduler_config.get("beta_schedule", "linear")
    if scheduler_config.get("trained_betas") is not None:
        betas = np.asarray(scheduler_config["trained_betas"], np.float32)
    elif schedule == "linear":
        betas = np.linspace(start, end, steps, dtype=np.float32)
    elif schedule == "scaled_linear":
        betas = np.linspace(start**0.5, end**0.5, steps, dtype=np.float32) ** 2
    else:
        raise ValueError(f"beta_schedule {schedule!r} is not supported (linear, scaled_linear)")
    return np.cumprod(1.0 - betas.astype(np.float32), dtype=np.float32)


def check_epsilon_model(scheduler_config: dict[str, Any], source: str) -> None:
    """TADPoLe compares noise predictions: a v- or sample-predicting model (SD 2.1 at 768) would
    make the formula measure something else."""
    kind = scheduler_config.get("prediction_type", "epsilon")
    if kind != "epsilon":
        raise ValueError(
            f"{source}: prediction_type {kind!r}; TADPoLe needs an ε-prediction model "
            "(SD 2.1-base or SD 1.5, not the 768-pixel v-prediction SD 2.1)"
        )


def symlog(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def frames_to_pixels(frames: jax.Array, size: int, pixel_range: str = "unit") -> jax.Array:
    """uint8 frames [N, H, W, 3] -> [N, size, size, 3] for the VAE: bilinear resize without
    antialiasing (torch's ``F.interpolate(mode='bilinear', align_corners=False)``), then
    ``2x − 1`` of x = frame / 255 ('unit') or of the raw 0-255 values ('release')."""
    if pixel_range not in PIXEL_RANGES:
        raise ValueError(f"pixel_range must be one of {PIXEL_RANGES}, got {pixel_range!r}")
    x = jnp.asarray(frames, f32)
    if x.shape[1:3] != (size, size):
        x = jax.image.resize(x, (x.shape[0], size, size, 3), "bilinear", antialias=False)
    if pixel_range == "unit":
        x = x / 255.0
    return 2.0 * x - 1.0


def add_noise(latent: jax.Array, noise: jax.Array, alpha_bar: jax.Array) -> jax.Array:
    """x_t = √ᾱ·x + √(1 − ᾱ)·ε, `alpha_bar` [N] per sample (the schedulers' ``add_noise``)."""
    a = alpha_bar.reshape(-1, *([1] * (latent.ndim - 1)))
    return jnp.sqrt(a) * latent + jnp.sqrt(1.0 - a) * noise


def tadpole_terms(
    eps_text: jax.Array,
    eps_uncond: jax.Array,
    noise: jax.Array,
    align_scale: float,
    recon_scale: float,
) -> dict[str, jax.Array]:
    """Per-sample reward and its two parts from the two noise predictions and the true noise,
    all [N, h, w, C]: 'reward' [N] = 'alignment' + 'reconstruction' (each already symlog-ed)."""
    axes = tuple(range(1, eps_text.ndim))
    alignment = jnp.mean(jnp.square(eps_text - eps_uncond), axis=axes)
    recon = jnp.mean(jnp.square(eps_uncond - noise), axis=axes) - jnp.mean(
        jnp.square(eps_text - noise), axis=axes
    )
    parts = {
        "alignment": symlog(align_scale * alignment),
        "reconstruction": symlog(recon_scale * recon),
    }
    return {"reward": parts["alignment"] + parts["reconstruction"], **parts}


def draw_noise_levels(key: jax.Array, count: int, base: int, spread: int) -> jax.Array:
    """[count] int32 noise levels t ~ U[base, base + spread) (one per episode)."""
    return jax.random.randint(key, (count,), base, base + spread, jnp.int32)
