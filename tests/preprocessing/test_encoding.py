"""Goal latents and keyframe features equal direct diffusers / transformers calls."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX
from transformers import AutoImageProcessor, DINOv3ViTModel

from genreward_jax.encoders.weights import weights_hash
from genreward_jax.goals import load_goal


def test_latent_equals_direct_diffusers_encode_of_saved_vae(file_goal):
    goal = load_goal(file_goal["goal"])
    vae = AutoencoderKLCogVideoX.from_pretrained(file_goal["vae"]).eval()
    frames = goal.frames[goal.frame_indices]  # [K, S, S, 3]
    video = torch.from_numpy(frames).float().permute(3, 0, 1, 2)[None] / 127.5 - 1.0
    with torch.no_grad():
        mean = vae.encode(video).latent_dist.mean[0]  # [C, T', h, w]
    # Equality with latent_dist.mean also shows the goal holds the mean, not a posterior sample.
    np.testing.assert_allclose(goal.latent_mean, mean.permute(1, 2, 3, 0).numpy(), atol=1e-6)
    assert goal.latent_mean.shape == (5, 8, 8, 8)  # 17 frames -> 5 latent frames of 64/8
    assert goal.provenance["vae"]["hash"] == weights_hash(file_goal["vae"])


def test_keyframe_feature_equals_direct_transformers_call(file_goal):
    goal = load_goal(file_goal["goal"])
    model = DINOv3ViTModel.from_pretrained(file_goal["dinov3"]).eval()
    processor = AutoImageProcessor.from_pretrained(file_goal["dinov3"])
    with torch.no_grad():
        pixels = processor(images=goal.keyframe, return_tensors="pt")["pixel_values"]
        assert pixels.shape[-2:] == (224, 224)
        pooled = model(pixel_values=pixels).pooler_output[0].numpy()
    np.testing.assert_allclose(goal.keyframe_feature, pooled, atol=1e-5)
    assert goal.provenance["dinov3"]["hash"] == weights_hash(file_goal["dinov3"])
