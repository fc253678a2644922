"""Load diffusers / transformers checkpoint folders into our Flax encoders, without torch.

Public API (all numpy + safetensors; nothing here imports torch):

    vae = load_vae_encoder(folder, dtype=jnp.float32, param_dtype=jnp.float32, conv_impl="auto")
    video = video_to_vae_input(frames_uint8)                     # [B, T, H, W, 3] in [-1, 1]
    mean, logvar = jax.jit(vae.apply)(vae.params, video)        # [B, T', H/8, W/8, 16] each
    # = diffusers' encode() incl. its 8-frame chunking; encode_chunked(vae.module, vae.params,
    # video) runs the literal chunk loop with the carried conv cache (same numbers).

    dino = load_dinov3(folder, dtype=jnp.bfloat16)
    out = jax.jit(dino.apply)(dino.params, preprocess_images(frames_uint8))
    out["pooled"], out["patch_tokens"]                           # [B, D], [B, h*w, D]

    clip = load_clip_vision(folder)                              # open_clip image tower
    s3d = load_s3d_video(folder)                                 # RoboCLIP's S3D video tower
    sd_vae = load_sd_vae_encoder(folder)                         # TADPoLe: SD's image VAE
    unet = load_sd_unet(folder)                                  #   and UNet (ε prediction)
    weights_hash(folder) -> hex sha256 of the config bytes followed by the weights file bytes

Both loaders return a `LoadedEncoder(module, params, config)` named tuple (so
`module, params, config = load_...(folder)` works). `dtype` is the compute dtype, `param_dtype`
the dtype the parameters are stored in (float32 or bfloat16). Every problem with a folder is
raised as `CheckpointError` naming the file, key or shape at fault.

Folders: a diffusers `AutoencoderKLCogVideoX` folder (`config.json` +
`diffusion_pytorch_model.safetensors`; decoder weights are skipped without being read) and a
transformers `DINOv3ViTModel` folder (`config.json` + `model.safetensors`, keys spelled
`layer.N.*` as on the hub or `model.layer.N.*` as a transformers 5 `state_dict()`). A sharded
checkpoint (`<weights>.index.json` plus shards) also loads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from genreward_jax.encoders import clip_vit, cogvideox_vae, dinov3, s3d, sd_unet, sd_vae
from genreward_jax.encoders.torch_pickle import (
    TorchPickleError,
    load_torch_checkpoint,
    widen_bfloat16,
)

f32 = jnp.float32

VAE_WEIGHTS = "diffusion_pytorch_model.safetensors"
DINO_WEIGHTS = "model.safetensors"
CLIP_WEIGHTS = "open_clip_model.safetensors"
CLIP_CONFIG = "open_clip_config.json"
S3D_WEIGHTS = "s3d_video.safetensors"  # written by preprocessing/s3d.py export_video_tower
S3D_CONFIG = "s3d_config.json"
DIFFUSERS_BIN = "diffusion_pytorch_model.bin"  # the torch pickle some diffusers folders ship
CONFIG = "config.json"
_MAX_LISTED = 8


class CheckpointError(ValueError):
    """A checkpoint folder cannot be loaded as asked (missing file, wrong keys or shapes)."""


class LoadedEncoder(NamedTuple):
    """A frozen encoder: `apply(params, x)` is pure and jittable."""

    module: nn.Module
    params: Any
    config: Any

    def apply(self, params: Any, *args: Any, **kwargs: Any) -> Any:
        return self.module.apply({"params": params}, *args, **kwargs)


def load_vae_encoder(
    folder: str | os.PathLike,
    dtype: Any = f32,
    param_dtype: Any = f32,
    conv_impl: str = "auto",
) -> LoadedEncoder:
    """diffusers `AutoencoderKLCogVideoX` folder -> `CogVideoXVAEEncoder` with its parameters.

    `apply(params, video)` returns (mean, logvar), see `CogVideoXVAEEncoder.__call__`;
    `conv_impl` see `cogvideox_vae.resolve_conv_impl`.
    """
    cogvideox_vae.resolve_conv_impl(conv_impl)  # fail early on a typo
    folder = Path(folder)
    config = cogvideox_vae.VAEEncoderConfig.from_diffusers(_read_config(folder))
    expected = cogvideox_vae.init_shapes(config)

    def rename(key: str) -> str | None:
        if key.startswith(("decoder.", "post_quant_conv.")):
            return None  # decoder half: not ours
        return key

    tensors = _read_tensors(folder, VAE_WEIGHTS, rename)
    params = _to_params(tensors, expected, param_dtype, folder / VAE_WEIGHTS)
    module = cogvideox_vae.CogVideoXVAEEncoder(config, dtype, conv_impl)
    return LoadedEncoder(module, params, config)


def load_dinov3(
    folder: str | os.PathLike, dtype: Any = f32, param_dtype: Any = f32
) -> LoadedEncoder:
    """transformers `DINOv3ViTModel` folder -> `DINOv3ViT` with its parameters.

    `apply(params, pixels)` returns {"pooled", "patch_tokens"}, see `DINOv3ViT.__call__`.
    """
    folder = Path(folder)
    config = dinov3.DINOv3Config.from_transformers(_read_config(folder))
    expected = dinov3.init_shapes(config)

    def rename(key: str) -> str:
        return "model." + key if key.startswith("layer.") else key

    tensors = _read_tensors(folder, DINO_WEIGHTS, rename)
    params = _to_params(tensors, expected, param_dtype, folder / DINO_WEIGHTS)
    return LoadedEncoder(dinov3.DINOv3ViT(config, dtype), params, config)


def load_clip_vision(
    folder: str | os.PathLike, dtype: Any = f32, param_dtype: Any = f32
) -> LoadedEncoder:
    """open_clip hub folder (`open_clip_config.json` + `open_clip_model.safetensors`) ->
    `CLIPVisionTower` (the image tower only; text-tower keys are never read).

    `apply(params, pixels)` returns the image embedding [B, D] as `model.encode_image` does
    (unnormalised); pixels from `clip_vit.preprocess_images(frames, loaded.config)`.
    """
    folder = Path(folder)
    raw = _read_config(folder, CLIP_CONFIG)
    path = folder / CLIP_CONFIG
    if "model_cfg" not in raw:
        raise CheckpointError(f"{path} has no 'model_cfg' (not an open_clip hub config)")
    try:
        config = clip_vit.CLIPVisionConfig.from_open_clip(
            raw["model_cfg"], raw.get("preprocess_cfg")
        )
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    if (
        not _weight_files(folder, CLIP_WEIGHTS, False)
        and (folder / "open_clip_pytorch_model.bin").is_file()
    ):
        raise CheckpointError(
            f"missing file: {folder / CLIP_WEIGHTS} (the folder has only the torch pickle "
            f"open_clip_pytorch_model.bin; the hub repository also serves the safetensors file)"
        )

    def rename(key: str) -> str | None:
        return key.removeprefix("visual.") if key.startswith("visual.") else None

    tensors = _read_tensors(folder, CLIP_WEIGHTS, rename)
    params = _to_params(tensors, clip_vit.init_shapes(config), param_dtype, folder / CLIP_WEIGHTS)
    return LoadedEncoder(clip_vit.CLIPVisionTower(config, dtype), params, config)


def load_s3d_video(folder: str | os.PathLike, dtype: Any = f32) -> LoadedEncoder:
    """S3D folder exported by `preprocessing/s3d.py` (`s3d_config.json` +
    `s3d_video.safetensors`) -> `S3DVideoTower`; `apply(params, video)` gives [B, 512]."""
    folder = Path(folder)
    config = _read_config(folder, S3D_CONFIG)
    if config.get("embed_dim") != s3d.EMBED_DIM:
        raise CheckpointError(
            f"{folder / S3D_CONFIG}: not an S3D video tower of embedding size {s3d.EMBED_DIM}"
        )
    tensors = _read_tensors(folder, S3D_WEIGHTS, lambda key: key)
    params = _to_params(tensors, s3d.init_shapes(), f32, folder / S3D_WEIGHTS)
    return LoadedEncoder(s3d.S3DVideoTower(dtype), params, config)


def load_sd_vae_encoder(
    folder: str | os.PathLike, dtype: Any = f32, param_dtype: Any = f32
) -> LoadedEncoder:
    """diffusers ``AutoencoderKL`` folder (Stable Diffusion's ``vae/``) -> `SDVAEEncoder`;
    ``apply(params, pixels)`` gives (mean, logvar), see ``sd_vae``. Reads the safetensors file or,
    failing that, ``diffusion_pytorch_model.bin``."""
    folder = Path(folder)
    try:
        config = sd_vae.SDVAEConfig.from_diffusers(_read_config(folder))
    except ValueError as err:
        raise CheckpointError(f"{folder / CONFIG}: {err}") from err

    def rename(key: str) -> str | None:
        return None if key.startswith(("decoder.", "post_quant_conv.")) else key

    tensors, source = _read_diffusers_tensors(folder, rename)
    params = _to_params(tensors, sd_vae.init_shapes(config), param_dtype, source)
    return LoadedEncoder(sd_vae.SDVAEEncoder(config, dtype), params, config)


def load_sd_unet(
    folder: str | os.PathLike, dtype: Any = f32, param_dtype: Any = f32
) -> LoadedEncoder:
    """diffusers ``UNet2DConditionModel`` folder (Stable Diffusion's ``unet/``) -> `SDUNet`;
    ``apply(params, sample, timesteps, context)`` gives ε, see ``sd_unet``."""
    folder = Path(folder)
    try:
        config = sd_unet.SDUNetConfig.from_diffusers(_read_config(folder))
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{folder / CONFIG}: {err}") from err
    tensors, source = _read_diffusers_tensors(folder, lambda key: key)
    params = _to_params(tensors, sd_unet.init_shapes(config), param_dtype, source)
    return LoadedEncoder(sd_unet.SDUNet(config, dtype), params, config)


def _read_diffusers_tensors(
    folder: Path, rename: Callable[[str], str | None]
) -> tuple[dict[str, tuple[str, np.ndarray]], Path]:
    """A diffusers model folder's tensors from its safetensors file (or shards), else from
    ``diffusion_pytorch_model.bin`` (our torch-free reader); with the file they came from."""
    if not _reads_bin(folder):
        return _read_tensors(folder, VAE_WEIGHTS, rename), folder / VAE_WEIGHTS
    path = folder / DIFFUSERS_BIN
    try:
        state = load_torch_checkpoint(path)
    except (TorchPickleError, OSError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    tensors: dict[str, tuple[str, np.ndarray]] = {}
    _add_renamed(tensors, ((k, lambda a=a: a) for k, a in state.items()), rename, path)
    return tensors, path


def _reads_bin(folder: Path) -> bool:
    """A diffusers folder is read from its torch pickle only when it has no safetensors."""
    return not _weight_files(folder, VAE_WEIGHTS, False) and (folder / DIFFUSERS_BIN).is_file()


def weights_hash(folder: str | os.PathLike) -> str:
    """sha256 (hex) of the config bytes (`config.json`, or an open_clip folder's
    `open_clip_config.json`) followed by the weights bytes (shards sorted by name).

    Identifies the exact encoder that produced a set of goal targets.
    """
    folder = Path(folder)
    names = (VAE_WEIGHTS, DINO_WEIGHTS, CLIP_WEIGHTS, S3D_WEIGHTS, DIFFUSERS_BIN)
    present = [name for name in names[:-1] if _weight_files(folder, name, False)]
    if _reads_bin(folder):
        present.append(DIFFUSERS_BIN)  # hash what the loaders read
    if len(present) != 1:
        raise CheckpointError(
            f"{folder}: expected exactly one of {' / '.join(names)} (or a sharded index), found "
            f"{present or 'neither'}"
        )
    config = {CLIP_WEIGHTS: CLIP_CONFIG, S3D_WEIGHTS: S3D_CONFIG}.get(present[0], CONFIG)
    digest = hashlib.sha256()
    for path in [_require_file(folder / config), *_weight_files(folder, present[0], True)]:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    return path


def _read_config(folder: Path, name: str = CONFIG) -> dict[str, Any]:
    """A checkpoint folder's JSON config (`config.json`, or the open_clip / S3D one)."""
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder does not exist: {folder}")
    path = _require_file(folder / name)
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err


def _weight_files(folder: Path, name: str, required: bool) -> list[Path]:
    """The single weights file, or the shards listed by `<name>.index.json`, in a stable order."""
    if (folder / name).is_file():
        return [folder / name]
    index = folder / f"{name}.index.json"
    if index.is_file():
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [_require_file(folder / shard) for shard in shards]
    if required:
        raise CheckpointError(f"missing file: {folder / name} (and no {index.name})")
    return []


def _read_tensors(
    folder: Path, name: str, rename: Callable[[str], str | None]
) -> dict[str, tuple[str, np.ndarray]]:
    """{renamed key: (key in the file, array)} for every key `rename` keeps; dropped keys are never
    read."""
    tensors: dict[str, tuple[str, np.ndarray]] = {}
    for path in _weight_files(folder, name, True):
        try:
            with safe_open(str(path), framework="numpy") as f:
                entries = ((k, functools.partial(_get_tensor, f, path, k)) for k in f.keys())
                _add_renamed(tensors, entries, rename, path)
        except CheckpointError:
            raise
        except Exception as err:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"cannot read {path}: {err}") from err
    return tensors


def _add_renamed(
    tensors: dict[str, tuple[str, np.ndarray]],
    entries: Iterable[tuple[str, Callable[[], np.ndarray]]],
    rename: Callable[[str], str | None],
    path: Path,
) -> None:
    """Adds (key, read) entries under their renamed keys; only kept keys are read, and two
    keys renamed alike are an error."""
    for key, read in entries:
        new_key = rename(key)
        if new_key is None:
            continue
        if new_key in tensors:
            raise CheckpointError(f"{path}: key {key!r} appears twice (as {new_key!r})")
        tensors[new_key] = (key, read())


def _get_tensor(handle: Any, path: Path, key: str) -> np.ndarray:
    # numpy has no bfloat16: read those tensors' raw bytes and widen them to float32.
    if handle.get_slice(key).get_dtype() != "BF16":
        return handle.get_tensor(key)
    stat = path.stat()
    start, end, shape = _raw_locations(str(path), stat.st_mtime_ns, stat.st_size)[key]
    with open(path, "rb") as f:
        f.seek(start)
        raw = np.frombuffer(f.read(end - start), dtype="<u2")
    return widen_bfloat16(raw).reshape(shape)


@functools.lru_cache(maxsize=4)
def _raw_locations(path: str, mtime_ns: int, size: int) -> dict[str, tuple[int, int, list[int]]]:
    """{key: (absolute start, end, shape)} from a safetensors header (mtime/size key the cache)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    header.pop("__metadata__", None)
    base = 8 + header_len
    return {
        key: (base + entry["data_offsets"][0], base + entry["data_offsets"][1], entry["shape"])
        for key, entry in header.items()
    }


def _param_path(key: str) -> tuple[str, ...]:
    """'encoder.down_blocks.0.resnets.1.conv1.conv.weight' ->
    ('encoder', 'down_blocks_0', 'resnets_1', 'conv1', 'conv', 'weight')."""
    path: list[str] = []
    for part in key.split("."):
        if re.fullmatch(r"\d+", part) and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path)


def _torch_name(path: tuple[str, ...]) -> str:
    """Inverse of `_param_path` + `_to_flax` naming, for error messages."""
    leaf = {"kernel": "weight", "scale": "weight"}.get(path[-1], path[-1])
    return ".".join([re.sub(r"_(\d+)$", r".\1", part) for part in path[:-1]] + [leaf])


def _to_flax(path: tuple[str, ...], array: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """torch (name, layout) -> Flax: conv OI... -> ...IO, linear [O, I] -> [I, O], norm weight
    -> scale."""
    if path[-1] != "weight":
        return path, array
    if array.ndim == 1:
        return (*path[:-1], "scale"), array
    if array.ndim == 2:
        return (*path[:-1], "kernel"), array.T
    spatial = tuple(range(2, array.ndim))
    return (*path[:-1], "kernel"), array.transpose(*spatial, 1, 0)


def _to_params(
    tensors: dict[str, tuple[str, np.ndarray]], expected: Any, param_dtype: Any, source: Path
) -> Any:
    """Check names and shapes against the module's abstract parameters and build the tree."""
    want = {
        tuple(k.key for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]
    }
    got: dict[tuple[str, ...], tuple[str, np.ndarray]] = {}
    original_shape: dict[str, tuple[int, ...]] = {}
    for key, (file_key, array) in tensors.items():
        path, converted = _to_flax(_param_path(key), array)
        got[path] = (file_key, converted)
        original_shape[file_key] = array.shape

    missing = sorted(_torch_name(p) for p in want.keys() - got.keys())
    unexpected = sorted(got[p][0] for p in got.keys() - want.keys())
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    mismatched = [
        f"{got[p][0]}: checkpoint {original_shape[got[p][0]]} -> {got[p][1].shape}, "
        f"model wants {tuple(want[p].shape)}"
        for p in sorted(want.keys() & got.keys())
        if got[p][1].shape != tuple(want[p].shape)
    ]
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise CheckpointError(f"{source} does not match its config.json: " + "; ".join(problems))

    tree: dict[str, Any] = {}
    for path, (_, array) in got.items():
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = jnp.asarray(array, dtype=param_dtype)
    return tree


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


__all__ = (
    "CheckpointError",
    "LoadedEncoder",
    "load_clip_vision",
    "load_dinov3",
    "load_sd_unet",
    "load_sd_vae_encoder",
    "load_vae_encoder",
    "weights_hash",
)
