"""Checkpoint loading: clear errors for bad folders, bf16/f16 files, hashing."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch_file

from genreward_jax.encoders import CheckpointError, load_dinov3, load_vae_encoder, weights_hash

DINO_FILE = "model.safetensors"
VAE_FILE = "diffusion_pytorch_model.safetensors"


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_missing_folder_config_and_weights(tiny_dino, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_dinov3(tmp_path / "nowhere")
    folder = _copy(tiny_dino.folder, tmp_path)
    (folder / DINO_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"missing file: .*{DINO_FILE}"):
        load_dinov3(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing file: .*config.json"):
        load_dinov3(folder)


def test_missing_and_unexpected_keys_are_named(tiny_dino, tmp_path):
    folder = _copy(tiny_dino.folder, tmp_path)
    tensors = load_file(folder / DINO_FILE)
    del tensors["layer.1.mlp.gate_proj.weight"]
    tensors["layer.1.extra.weight"] = np.zeros(3, np.float32)
    save_file(tensors, folder / DINO_FILE)
    with pytest.raises(CheckpointError) as info:
        load_dinov3(folder)
    message = str(info.value)
    assert "missing keys: model.layer.1.mlp.gate_proj.weight" in message
    assert "unexpected keys: layer.1.extra.weight" in message


def test_shape_mismatch_is_named(tiny_dino, tmp_path):
    folder = _copy(tiny_dino.folder, tmp_path)
    _edit_config(folder, intermediate_size=80)
    with pytest.raises(CheckpointError, match=r"shape mismatches: layer\.0\.mlp\.down_proj\."):
        load_dinov3(folder)


def test_both_key_spellings_at_once_is_an_error(tiny_dino, tmp_path):
    folder = _copy(tiny_dino.folder, tmp_path)
    tensors = load_file(folder / DINO_FILE)
    tensors["model.layer.0.norm1.bias"] = tensors["layer.0.norm1.bias"]
    save_file(tensors, folder / DINO_FILE)
    with pytest.raises(CheckpointError, match="appears twice"):
        load_dinov3(folder)


def test_wrong_model_type(tiny_dino, tiny_vae):
    with pytest.raises(ValueError, match="dinov3_vit"):
        load_dinov3(tiny_vae.folder)
    with pytest.raises(ValueError, match="AutoencoderKLCogVideoX"):
        load_vae_encoder(tiny_dino.folder)


def test_vae_quant_conv_weights_without_quant_conv_config(tiny_vae_quant, tmp_path):
    folder = _copy(tiny_vae_quant.folder, tmp_path)
    _edit_config(folder, use_quant_conv=False)
    with pytest.raises(CheckpointError, match=r"unexpected keys: quant_conv\.bias, quant_conv\.w"):
        load_vae_encoder(folder)


def test_vae_missing_encoder_key(tiny_vae, tmp_path):
    folder = _copy(tiny_vae.folder, tmp_path)
    tensors = load_file(folder / VAE_FILE)
    del tensors["encoder.down_blocks.1.resnets.0.conv_shortcut.weight"]
    save_file(tensors, folder / VAE_FILE)
    with pytest.raises(CheckpointError, match=r"down_blocks\.1\.resnets\.0\.conv_shortcut\.weight"):
        load_vae_encoder(folder)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_checkpoints_load_exactly(tiny_dino, tmp_path, dtype):
    """numpy has no bfloat16: those tensors are widened from their raw bytes, exactly."""
    folder = tmp_path / "half"
    folder.mkdir()
    shutil.copy(tiny_dino.folder / "config.json", folder / "config.json")
    state = {k: v.to(dtype).contiguous() for k, v in tiny_dino.model.state_dict().items()}
    save_torch_file(state, str(folder / DINO_FILE))
    loaded = load_dinov3(folder)
    expected = state["model.layer.1.attention.q_proj.weight"].float().numpy().T
    actual = np.asarray(loaded.params["model"]["layer_1"]["attention"]["q_proj"]["kernel"])
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual, expected)
    low = load_dinov3(folder, param_dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree_util.tree_leaves(low.params))


def test_weights_hash(tiny_dino, tiny_vae, tmp_path):
    folder = _copy(tiny_dino.folder, tmp_path)
    expected = hashlib.sha256(
        (folder / "config.json").read_bytes() + (folder / DINO_FILE).read_bytes()
    ).hexdigest()
    assert weights_hash(folder) == expected == weights_hash(tiny_dino.folder)
    assert weights_hash(tiny_vae.folder) != expected
    data = bytearray((folder / DINO_FILE).read_bytes())
    data[-1] ^= 1
    (folder / DINO_FILE).write_bytes(bytes(data))
    assert weights_hash(folder) != expected
    (folder / DINO_FILE).unlink()
    with pytest.raises(CheckpointError, match="found neither"):
        weights_hash(folder)


def test_sharded_checkpoint_loads_and_hashes(tiny_dino, tmp_path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(tiny_dino.folder / "config.json", folder / "config.json")
    tensors = load_file(tiny_dino.folder / DINO_FILE)
    keys = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": keys[::2],
        "model-00002-of-00002.safetensors": keys[1::2],
    }
    for name, shard_keys in shards.items():
        save_file({k: tensors[k] for k in shard_keys}, folder / name)
    weight_map = {k: name for name, shard_keys in shards.items() for k in shard_keys}
    (folder / f"{DINO_FILE}.index.json").write_text(json.dumps({"weight_map": weight_map}))

    sharded, single = load_dinov3(folder), load_dinov3(tiny_dino.folder)
    for a, b in zip(
        jax.tree_util.tree_leaves(sharded.params),
        jax.tree_util.tree_leaves(single.params),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    expected = hashlib.sha256(
        b"".join((folder / name).read_bytes() for name in ["config.json", *sorted(shards)])
    ).hexdigest()
    assert weights_hash(folder) == expected
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing file: .*00002-of-00002"):
        load_dinov3(folder)
