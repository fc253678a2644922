"""Flax ports of Stable Diffusion's UNet and VAE encoder against diffusers (random weights), the
torch-free .bin reader against torch.save, and the refusals of configs the port does not run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from genreward_jax.encoders import (
    CheckpointError,
    load_sd_unet,
    load_sd_vae_encoder,
    sd_unet,
    sd_vae,
    weights,
    weights_hash,
)
from genreward_jax.encoders.torch_pickle import TorchPickleError, load_torch_checkpoint
from preprocessing.models import (
    SD21_BASE_UNET_CONFIG,
    SD_VAE_CONFIG,
    TINY_SD_VAE_CONFIG,
    TINY_UNET_CONFIG,
)

# SD 1.5's layout in small: one head count for every block, 1x1-conv projections.
SD15_STYLE_UNET = {
    **TINY_UNET_CONFIG,
    "attention_head_dim": 4,
    "use_linear_projection": False,
    "cross_attention_dim": 24,
}


def randomise(model: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    """Every parameter drawn afresh (norm affines around 1/0 too), so no zero init hides a
    mistake."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator) * std
            base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            param.copy_(noise + base)
    return model.eval()


def unet_inputs(config, batch=2, side=8, seed=0):
    rng = np.random.default_rng(seed)
    sample = rng.standard_normal((batch, side, side, config["in_channels"])).astype(np.float32)
    context = rng.standard_normal((batch, 7, config["cross_attention_dim"])).astype(np.float32)
    return sample, np.array([550, 3])[:batch], context


def torch_eps(unet, sample, t, context):
    with torch.no_grad():
        out = unet(
            torch.from_numpy(sample).permute(0, 3, 1, 2),
            torch.from_numpy(t),
            encoder_hidden_states=torch.from_numpy(context),
        ).sample
    return out.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module", params=["sd21_style", "sd15_style"])
def tiny_unet(request, tmp_path_factory):
    config = TINY_UNET_CONFIG if request.param == "sd21_style" else SD15_STYLE_UNET
    unet = randomise(UNet2DConditionModel(**config), seed=1)
    folder = tmp_path_factory.mktemp(request.param)
    unet.save_pretrained(folder)
    return unet, folder


def test_unet_matches_diffusers_and_reports_bfloat16(tiny_unet):
    torch_unet, folder = tiny_unet
    config = dict(torch_unet.config)
    sample, t, context = unet_inputs(config)
    want = torch_eps(torch_unet, sample, t, context)
    loaded = load_sd_unet(folder)
    args = (jnp.asarray(sample), jnp.asarray(t), jnp.asarray(context))
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(jax.jit(loaded.apply)(loaded.params, *args))
    assert np.abs(want).max() > 0.1  # a real signal, not a dead network
    np.testing.assert_allclose(ours, want, atol=1e-4)
    half = load_sd_unet(folder, dtype=jnp.bfloat16)
    low = np.asarray(jax.jit(half.apply)(half.params, *args))
    relative = np.abs(low - want).max() / np.abs(want).max()
    print(f"bfloat16 UNet: max deviation {relative:.2e} of the output's scale")
    assert relative < 0.1


def test_vae_encoder_matches_diffusers_posterior(tmp_path):
    vae = randomise(AutoencoderKL(**TINY_SD_VAE_CONFIG), seed=2)
    vae.save_pretrained(tmp_path)
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        dist = vae.encode(torch.from_numpy(pixels).permute(0, 3, 1, 2)).latent_dist
    loaded = load_sd_vae_encoder(tmp_path)
    with jax.default_matmul_precision("highest"):
        mean, logvar = jax.jit(loaded.apply)(loaded.params, jnp.asarray(pixels))
    assert mean.shape == (2, 8, 8, 4)
    np.testing.assert_allclose(mean, dist.mean.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    np.testing.assert_allclose(logvar, dist.logvar.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    latent = sd_vae.sample_latent(jax.random.key(0), mean, logvar, loaded.config.scaling_factor)
    draw = (np.asarray(latent) / loaded.config.scaling_factor - np.asarray(mean)) / np.exp(
        0.5 * np.asarray(logvar)
    )
    assert abs(draw.mean()) < 0.2 and 0.8 < draw.std() < 1.2  # a standard normal posterior draw


def test_bin_checkpoint_loads_as_the_safetensors_file(tiny_unet, tmp_path):
    torch_unet, folder = tiny_unet
    torch_unet.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / weights.DIFFUSERS_BIN).is_file()
    from_bin, from_safetensors = load_sd_unet(tmp_path), load_sd_unet(folder)
    leaves = zip(
        jax.tree.leaves(from_bin.params), jax.tree.leaves(from_safetensors.params), strict=True
    )
    assert all(np.array_equal(a, b) for a, b in leaves)
    assert len(weights_hash(tmp_path)) == 64


def test_torch_pickle_reader_keeps_dtypes_views_and_refuses_code(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {
        "view": base.t()[1:],  # non-contiguous, offset into a shared storage
        "bf16": torch.randn(3, 5).to(torch.bfloat16),
        "half": torch.randn(2, 2).half(),
        "long": torch.tensor([1, -2, 3]),
    }
    torch.save(state, tmp_path / "state.bin")
    read = load_torch_checkpoint(tmp_path / "state.bin")
    for key, tensor in state.items():
        assert read[key].shape == tuple(tensor.shape)
        np.testing.assert_array_equal(read[key], tensor.float().numpy().astype(read[key].dtype))
    assert read["bf16"].dtype == np.float32 and read["half"].dtype == np.float16
    torch.save(
        {"x": torch.zeros(1), "counter": __import__("collections").Counter()}, tmp_path / "bad"
    )
    with pytest.raises(TorchPickleError, match="collections.Counter"):
        load_torch_checkpoint(tmp_path / "bad")
    (tmp_path / "legacy.bin").write_bytes(b"\x80\x02not a zip")
    with pytest.raises(TorchPickleError, match="not a zip-format"):
        load_torch_checkpoint(tmp_path / "legacy.bin")


def test_unported_configs_are_refused_by_name(tiny_unet, tmp_path):
    _, folder = tiny_unet
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "class_embed_type": "timestep"}))
    with pytest.raises(CheckpointError, match="class_embed_type"):
        load_sd_unet(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "_class_name": "AutoencoderKL"}))
    with pytest.raises(CheckpointError, match="UNet2DConditionModel"):
        load_sd_unet(tmp_path)
    vae_config = {"_class_name": "AutoencoderKL", **TINY_SD_VAE_CONFIG}
    (tmp_path / "config.json").write_text(json.dumps(vae_config))
    with pytest.raises(CheckpointError, match="missing file.*diffusion_pytorch_model"):
        load_sd_vae_encoder(tmp_path)


def _fast_random(model_class, config: dict, seed: int) -> torch.nn.Module:
    """A large model with random weights in seconds: built on the meta device, each parameter a
    slice of one shared normal pool at a random offset (no two alike, no periodic pattern a
    transposed layout could hide in), scaled by 1/sqrt(fan-in); norm scales around 1."""
    with torch.device("meta"):
        model = model_class(**config)
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    largest = max(p.numel() for p in model.parameters())
    pool = torch.randn(2 * largest, generator=generator)
    with torch.no_grad():
        for name, param in model.named_parameters():
            start = int(torch.randint(0, largest, (1,), generator=generator))
            values = pool[start : start + param.numel()].view_as(param)
            if param.ndim > 1:
                param.copy_(values * param[0].numel() ** -0.5)
            elif "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * values)
            else:
                param.copy_(0.1 * values)
    return model.eval()


def _in_memory_params(model: torch.nn.Module, config, module):
    """A torch model's parameters in our layout without writing gigabytes to disk."""
    state = {
        k: (k, v.numpy())
        for k, v in model.state_dict().items()
        if not k.startswith(("decoder.", "post_quant_conv."))
    }
    return weights._to_params(state, module.init_shapes(config), jnp.float32, "memory")


@pytest.mark.slow
def test_real_sd21_base_config_matches_diffusers_at_a_small_size():
    """SD 2.1-base's UNet (865M parameters) at an 8x8 latent and SD's VAE encoder at 64x64:
    every block type, head layout and width of the real config, random weights."""
    unet = _fast_random(UNet2DConditionModel, SD21_BASE_UNET_CONFIG, seed=0)
    config = sd_unet.SDUNetConfig.from_diffusers(dict(unet.config))
    assert config.heads == (5, 10, 20, 20) and config.use_linear_projection
    sample, t, context = unet_inputs(dict(unet.config))
    context = context[:, :2]
    want = torch_eps(unet, sample, t, context)
    params = _in_memory_params(unet, config, sd_unet)
    del unet
    with jax.default_matmul_precision("highest"):
        ours = sd_unet.SDUNet(config).apply(
            {"params": params}, jnp.asarray(sample), jnp.asarray(t), jnp.asarray(context)
        )
    np.testing.assert_allclose(np.asarray(ours), want, atol=1e-4)
    del params

    vae = _fast_random(AutoencoderKL, SD_VAE_CONFIG, seed=1)
    vae_config = sd_vae.SDVAEConfig.from_diffusers(dict(vae.config))
    pixels = np.random.default_rng(1).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        dist = vae.encode(torch.from_numpy(pixels).permute(0, 3, 1, 2)).latent_dist
    vae_params = _in_memory_params(vae, vae_config, sd_vae)
    with jax.default_matmul_precision("highest"):
        mean, logvar = sd_vae.SDVAEEncoder(vae_config).apply(
            {"params": vae_params}, jnp.asarray(pixels)
        )
    np.testing.assert_allclose(mean, dist.mean.permute(0, 2, 3, 1).numpy(), atol=1e-4)
    np.testing.assert_allclose(logvar, dist.logvar.permute(0, 2, 3, 1).numpy(), atol=1e-4)
