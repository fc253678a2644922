"""The goal file's TADPoLe section: Stable Diffusion's text embeddings of the task prompt and of
the empty prompt, made offline (the text encoder stays in PyTorch), read by the online reward.

TADPoLe asks the UNet for its noise prediction twice per frame, conditioned on the prompt and on
nothing; both conditionings are the CLIP text encoder's last hidden states of the tokens padded
to the tokenizer's maximum length (77), exactly as the release's ``get_text_embeds`` makes them.
The provenance records the Stable Diffusion folder and the hashes of its UNet and VAE, which the
online stage loads into its Flax ports and checks before it trusts a reward.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from genreward_jax.encoders.weights import weights_hash
from preprocessing.models import StableDiffusionModel


@dataclasses.dataclass
class TADPoLeSection:
    context: np.ndarray  # [2, L, D] float32: row 0 the empty prompt, row 1 the task prompt
    provenance: dict


@torch.no_grad()
def text_embeddings(sd: StableDiffusionModel, prompts: list[str]) -> np.ndarray:
    """[P, L, D] float32: the text encoder's last hidden states, tokens padded to max length."""
    tokens = sd.tokenizer(
        prompts,
        padding="max_length",
        max_length=sd.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    return sd.text_encoder(tokens.input_ids)[0].float().numpy().astype(np.float32)


def tadpole_section(sd: StableDiffusionModel, prompt: str, goal_dir: str) -> TADPoLeSection:
    if not prompt.strip():
        raise ValueError("TADPoLe needs a non-empty prompt (--tadpole_prompt)")
    context = text_embeddings(sd, ["", prompt])
    provenance = {
        "id": sd.model_id,
        "prompt": prompt,
        "path": sd.folder,
        "path_from_goal": os.path.relpath(sd.folder, goal_dir),
        "unet_hash": weights_hash(os.path.join(sd.folder, "unet")),
        "vae_hash": weights_hash(os.path.join(sd.folder, "vae")),
        "text": "last_hidden_state, padded to max_length",
    }
    return TADPoLeSection(context, provenance)
