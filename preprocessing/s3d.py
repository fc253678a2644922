"""S3D-G text–video model (MIL-NCE on HowTo100M) in PyTorch: RoboCLIP's reward model, offline.

RoboCLIP (Sontakke et al., NeurIPS 2023) scores an episode by the dot product of its video's S3D
embedding with a target embedding: of a text prompt, or of a demonstration video. Offline we
embed that target with this module; online the video tower runs as our Flax port
(``genreward_jax/encoders/s3d.py``), loading the weights this module exports
(``export_video_tower``).

Architecture (Xie et al. 2018, S3D-G; Miech et al. 2020, MIL-NCE), as the released
``s3d_howto100m.pth`` expects it, parameter names included so that ``load_state_dict`` of that file
is strict: a space-to-depth stem (2×2×2 blocks folded into channels, then a [2, 4, 4] convolution
with TensorFlow-style SAME padding recovered by dropping the first output of each axis), separable
3-D convolutions (spatial 1×k×k then temporal k×1×1, each with BatchNorm and ReLU), self-gating
(a sigmoid of a linear map of the spatio-temporal mean scales every channel), nine Inception
blocks between max-pools with SAME padding, global average pooling and a linear map to the 512-d
joint space. Input: [B, 3, T, H, W] with T, H, W even. The text tower: words (lower-cased, split
on ``[\\w']+``, looked up in ``s3d_dict.npy``, unknown words dropped, zero-padded to 16) ->
300-d embeddings -> linear 2048 + ReLU -> max over words -> linear 512.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import torch
from torch import nn

MAX_WORDS = 16
EMBED_DIM = 512
# (input, b0, b1a, b1b, b2a, b2b, b3b) of each Inception block, in order.
INCEPTION = {
    "mixed_3b": (192, 64, 96, 128, 16, 32, 32),
    "mixed_3c": (256, 128, 128, 192, 32, 96, 64),
    "mixed_4b": (480, 192, 96, 208, 16, 48, 64),
    "mixed_4c": (512, 160, 112, 224, 24, 64, 64),
    "mixed_4d": (512, 128, 128, 256, 24, 64, 64),
    "mixed_4e": (512, 112, 144, 288, 32, 64, 64),
    "mixed_4f": (528, 256, 160, 320, 32, 128, 128),
    "mixed_5b": (832, 256, 160, 320, 32, 128, 128),
    "mixed_5c": (832, 384, 192, 384, 48, 128, 128),
}
VIDEO_WEIGHTS = "s3d_video.safetensors"
VIDEO_CONFIG = "s3d_config.json"


class STConv3D(nn.Module):
    """Conv3d + BatchNorm + ReLU; separable: a spatial (1, k, k) then a temporal (k, 1, 1) one."""

    def __init__(self, cin: int, cout: int, kernel: tuple, stride=1, padding=0, separable=False):
        super().__init__()
        self.separable = separable
        if separable:
            k, p = kernel[0], padding
            self.conv1 = nn.Conv3d(cin, cout, (1, k, k), (1, stride, stride), (0, p, p), bias=False)
            self.bn1 = nn.BatchNorm3d(cout)
            self.conv2 = nn.Conv3d(cout, cout, (k, 1, 1), (stride, 1, 1), (p, 0, 0), bias=False)
            self.bn2 = nn.BatchNorm3d(cout)
        else:
            self.conv1 = nn.Conv3d(cin, cout, kernel, stride, padding, bias=False)
            self.bn1 = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        if self.separable:
            x = torch.relu(self.bn2(self.conv2(x)))
        return x


class SelfGating(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return gate[:, :, None, None, None] * x


def same_max_pool(x: torch.Tensor, kernel: tuple, stride: tuple) -> torch.Tensor:
    """TensorFlow SAME max-pooling as the release emulates it: zero padding of max(k − s, 0)
    split low/high per axis, then ceil-mode pooling."""
    pads = []
    for k, s in zip(reversed(kernel), reversed(stride), strict=True):  # F.pad wants W, H, T
        along = max(k - s, 0)
        pads += [along // 2, along - along // 2]
    return nn.functional.max_pool3d(nn.functional.pad(x, pads), kernel, stride, ceil_mode=True)


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, b0: int, b1a: int, b1b: int, b2a: int, b2b: int, b3b: int):
        super().__init__()
        self.conv_b0 = STConv3D(cin, b0, (1, 1, 1))
        self.conv_b1_a = STConv3D(cin, b1a, (1, 1, 1))
        self.conv_b1_b = STConv3D(b1a, b1b, (3, 3, 3), padding=1, separable=True)
        self.conv_b2_a = STConv3D(cin, b2a, (1, 1, 1))
        self.conv_b2_b = STConv3D(b2a, b2b, (3, 3, 3), padding=1, separable=True)
        self.conv_b3_b = STConv3D(cin, b3b, (1, 1, 1))
        self.gating_b0, self.gating_b1 = SelfGating(b0), SelfGating(b1b)
        self.gating_b2, self.gating_b3 = SelfGating(b2b), SelfGating(b3b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b0 = self.gating_b0(self.conv_b0(x))
        b1 = self.gating_b1(self.conv_b1_b(self.conv_b1_a(x)))
        b2 = self.gating_b2(self.conv_b2_b(self.conv_b2_a(x)))
        b3 = nn.functional.max_pool3d(x, 3, 1, 1)
        b3 = self.gating_b3(self.conv_b3_b(b3))
        return torch.cat([b0, b1, b2, b3], dim=1)


class SentenceEmbedding(nn.Module):
    """The text tower; ``words`` is s3d_dict.npy's vocabulary (token i + 1 is words[i])."""

    def __init__(
        self,
        words: list[str],
        num_embeddings: int | None = None,
        word_dim: int = 300,
        hidden: int = 2048,
    ):
        super().__init__()
        self.word_embd = nn.Embedding(num_embeddings or len(words) + 1, word_dim)
        self.fc1 = nn.Linear(word_dim, hidden)
        self.fc2 = nn.Linear(hidden, EMBED_DIM)
        self.token = {word: i + 1 for i, word in enumerate(words)}

    def tokens(self, sentences: list[str]) -> torch.Tensor:
        """[S, 16] token ids (0: padding, also embedded and max-pooled, as in training)."""
        rows = []
        for sentence in sentences:
            words = re.findall(r"[\w']+", sentence.lower())
            ids = [self.token[w] for w in words if w in self.token]
            rows.append((ids + [0] * MAX_WORDS)[:MAX_WORDS])
        return torch.tensor(rows, dtype=torch.long)

    def forward(self, sentences: list[str]) -> torch.Tensor:
        x = torch.relu(self.fc1(self.word_embd(self.tokens(sentences))))
        return self.fc2(x.max(dim=1).values)


class S3D(nn.Module):
    """S3D-G video tower + text tower; ``forward`` embeds videos [B, 3, T, H, W] -> [B, 512]."""

    def __init__(self, words: list[str], num_embeddings: int | None = None):
        super().__init__()
        self.conv1 = STConv3D(24, 64, (2, 4, 4), stride=1, padding=(1, 2, 2))
        self.conv_2b = STConv3D(64, 64, (1, 1, 1))
        self.conv_2c = STConv3D(64, 192, (3, 3, 3), padding=1, separable=True)
        self.gating = SelfGating(192)
        for name, dims in INCEPTION.items():
            setattr(self, name, InceptionBlock(*dims))
        self.fc = nn.Linear(1024, EMBED_DIM)
        self.text_module = SentenceEmbedding(words, num_embeddings)

    @staticmethod
    def space_to_depth(x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, 8C, T/2, H/2, W/2]; channel ((dt·2 + dh)·2 + dw)·C + c."""
        b, c, t, h, w = x.shape
        x = x.view(b, c, t // 2, 2, h // 2, 2, w // 2, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)
        return x.reshape(b, 8 * c, t // 2, h // 2, w // 2)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.space_to_depth(video))[:, :, 1:, 1:, 1:]
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.gating(self.conv_2c(self.conv_2b(x)))
        x = same_max_pool(x, (1, 3, 3), (1, 2, 2))
        x = self.mixed_3c(self.mixed_3b(x))
        x = same_max_pool(x, (3, 3, 3), (2, 2, 2))
        for name in ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"):
            x = getattr(self, name)(x)
        x = same_max_pool(x, (2, 2, 2), (2, 2, 2))
        x = self.mixed_5c(self.mixed_5b(x))
        return self.fc(x.mean(dim=(2, 3, 4)))


def load_s3d(weights: str, dictionary: str) -> S3D:
    """The released model: ``s3d_howto100m.pth`` and ``s3d_dict.npy`` (strict key match)."""
    words = [str(w) for w in np.load(dictionary, allow_pickle=True)]
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model = S3D(words, int(state["text_module.word_embd.weight"].shape[0]))
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_video_tower(model: S3D, folder: str) -> str:
    """Writes the video tower's tensors (no text tower, no BatchNorm counters) as safetensors
    plus a config naming the architecture: what the online Flax port loads without torch."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    tensors = {
        k: v.detach().contiguous().float()
        for k, v in model.state_dict().items()
        if not k.startswith("text_module.") and not k.endswith("num_batches_tracked")
    }
    save_file(tensors, os.path.join(folder, VIDEO_WEIGHTS))
    with open(os.path.join(folder, VIDEO_CONFIG), "w") as f:
        json.dump(
            {"architecture": "s3d-g howto100m mil-nce", "embed_dim": EMBED_DIM, "bn_eps": 1e-5},
            f,
            indent=1,
        )
    return os.path.abspath(folder)
