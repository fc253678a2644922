"""The online stage runs without torch: loading and running the encoders must never import it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
import genreward_jax
from genreward_jax.encoders import (load_dinov3, load_vae_encoder, preprocess_images,
                                    video_to_vae_input, weights_hash)
from genreward_jax.encoders import clip_vit
from genreward_jax.encoders.weights import load_clip_vision
import genreward_jax.main, genreward_jax.rewards.plugins, genreward_jax.rewards.vlmrm_rewards
import genreward_jax.rewards.roboclip_rewards, genreward_jax.encoders.s3d
import genreward_jax.rewards.tadpole_rewards
from genreward_jax.encoders import load_sd_unet, load_sd_vae_encoder

vae_folder, dino_folder, clip_folder, sd_folder = sys.argv[1:5]
vae = load_vae_encoder(vae_folder)
frames = np.zeros((1, 9, 16, 16, 3), np.uint8)
mean, logvar = jax.jit(vae.apply)(vae.params, video_to_vae_input(frames))
dino = load_dinov3(dino_folder)
out = jax.jit(dino.apply)(dino.params, preprocess_images(frames[0], 32))
hashes = [weights_hash(vae_folder), weights_hash(dino_folder)]
clip = load_clip_vision(clip_folder)
image = jax.jit(clip.apply)(clip.params, clip_vit.preprocess_images(frames[0], clip.config))
sd_vae = load_sd_vae_encoder(sd_folder + "/vae")
sd_mean, _ = jax.jit(sd_vae.apply)(sd_vae.params, jnp.zeros((1, 32, 32, 3)))
unet = load_sd_unet(sd_folder + "/unet_bin")  # the torch pickle, read by our own reader
eps = jax.jit(unet.apply)(unet.params, sd_mean, jnp.array([500]), jnp.zeros((1, 77, 32)))
print(json.dumps({
    "eps": list(eps.shape),
    "torch_modules": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")),
    "latent": list(mean.shape),
    "pooled": list(out["pooled"].shape),
    "clip": list(image.shape),
    "finite": bool(jnp.isfinite(mean).all() and jnp.isfinite(out["pooled"]).all()),
}))
"""


def test_encoders_run_without_importing_torch(tiny_vae, tiny_dino, tiny_clip, tiny_sd):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(tiny_vae.folder),
            str(tiny_dino.folder),
            str(tiny_clip),
            str(tiny_sd),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch_modules"] == []
    assert report["latent"] == [1, 3, 4, 4, 4]
    assert report["pooled"] == [9, 32]
    assert report["clip"] == [9, 24]
    assert report["eps"] == [1, 8, 8, 4]
    assert report["finite"]
