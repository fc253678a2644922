"""Encoder speed: our jitted Flax encoders vs the PyTorch reference, same machine, same run.

Real configs (CogVideoX-5B VAE encoder, DINOv3 ViT-S/16+) with random weights, saved with
save_pretrained and loaded through our loaders. Time per call after warm-up (compile excluded),
median of --repeats.

Run from the repository root:
    .venv/bin/python -m bench.encoders                  # full set, float32 and bfloat16
    .venv/bin/python -m bench.encoders --quick --dtypes=float32   # 64^2 VAE only, 1 repeat
    .venv/bin/python -m bench.encoders --device=cuda    # torch on CUDA; JAX on its default backend
    .venv/bin/python -m bench.encoders --ops            # also time one conv3d / GroupNorm layer
Prints a table with ours / reference and writes JSON (default bench/results/encoders.json).
"ours err" / "torch err": max abs difference of our / PyTorch's output (VAE latent mean, DINOv3
pooled feature) from PyTorch float32 on the same input (ours in float32 = parity at full size).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from absl import app, flags
from diffusers import AutoencoderKLCogVideoX
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from genreward_jax.atomic import atomic_write_json  # noqa: E402
from genreward_jax.encoders import load_dinov3, load_vae_encoder
from genreward_jax.encoders.cogvideox_vae import CausalConv3d, ChunkGroupNorm, resolve_conv_impl
from preprocessing.models import COGVIDEOX_5B_VAE_CONFIG, DINOV3_VITS16PLUS_CONFIG

_DEVICE = flags.DEFINE_enum(
    "device", "auto", ["auto", "cpu", "cuda"], "Torch device; auto picks cuda when available."
)
_DTYPES = flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes to time.")
_MODELS = flags.DEFINE_list("models", ["vae", "dinov3"], "Which encoders to time.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 3, "Timed calls per case (median reported).", lower_bound=1
)
_QUICK = flags.DEFINE_bool("quick", False, "Only the 64^2 VAE cases, one repeat (slow CPUs).")
_OPS = flags.DEFINE_bool("ops", False, "Also time single layers (where the VAE time goes).")
_CONV_IMPL = flags.DEFINE_enum(
    "conv_impl", "auto", ["auto", "conv3d", "taps2d"], "How our VAE runs its 3x3x3 convolutions."
)
_OUTPUT = flags.DEFINE_string("output", "bench/results/encoders.json", "Where to write JSON.")

REAL_VAE = {
    **COGVIDEOX_5B_VAE_CONFIG,
    "down_block_types": ("CogVideoXDownBlock3D",) * 4,
    "up_block_types": ("CogVideoXUpBlock3D",) * 4,
}
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
JAX_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class Case:
    model: str  # 'vae' or 'dinov3'
    batch: int
    frames: int  # video frames (VAE) or 1 (DINOv3: batch images)
    size: int
    dtype: str

    @property
    def label(self) -> str:
        if self.model == "vae":
            return f"VAE {self.frames} frames {self.size}^2 {self.dtype}"
        return f"DINOv3 {self.batch} images {self.size}^2 {self.dtype}"


def cases(models: list[str], dtypes: list[str], quick: bool) -> list[Case]:
    sizes_vae = (64,) if quick else (64, 128)
    out = []
    for dtype in dtypes:
        if "vae" in models:
            out += [Case("vae", 1, t, s, dtype) for s in sizes_vae for t in (16, 17)]
        if "dinov3" in models:
            out += [Case("dinov3", 16, 1, s, dtype) for s in (128, 224)]
    return out


def _median_seconds(fn: Callable[[], Any], sync: Callable[[Any], Any], repeats: int) -> float:
    sync(fn())  # warm-up: compile / autotune / allocate
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sync(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _torch_sync(device: torch.device) -> Callable[[Any], Any]:
    def sync(out: Any) -> Any:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    return sync


def _jax_sync(out: Any) -> Any:
    return jax.block_until_ready(out)


class Models:
    """Builds each reference once (random weights) and the Flax port from its saved folder."""

    def __init__(self, device: torch.device, workdir: str):
        self.device = device
        self.workdir = workdir
        self._torch: dict[str, torch.nn.Module] = {}

    def reference(self, model: str) -> torch.nn.Module:
        if model not in self._torch:
            torch.manual_seed(0)
            if model == "vae":
                module = AutoencoderKLCogVideoX(**REAL_VAE).eval()
            else:
                module = DINOv3ViTModel(DINOv3ViTConfig(**DINOV3_VITS16PLUS_CONFIG)).eval()
            module.save_pretrained(os.path.join(self.workdir, model))
            if model == "vae":
                module.decoder = None  # only encode() is timed; frees memory
            self._torch[model] = module
        return self._torch[model]

    def ours(self, model: str, dtype: str):
        self.reference(model)  # makes sure the folder exists
        folder = os.path.join(self.workdir, model)
        if model == "dinov3":
            return load_dinov3(folder, dtype=JAX_DTYPES[dtype], param_dtype=JAX_DTYPES[dtype])
        return load_vae_encoder(
            folder,
            dtype=JAX_DTYPES[dtype],
            param_dtype=JAX_DTYPES[dtype],
            conv_impl=_CONV_IMPL.value,
        )


def time_case(
    case: Case, models: Models, repeats: int
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Times one case; also returns both outputs (VAE latent mean / DINOv3 pooled), float32."""
    rng = np.random.default_rng(0)
    if case.model == "vae":
        shape = (case.batch, case.frames, case.size, case.size, 3)
    else:
        shape = (case.batch, case.size, case.size, 3)
    x = rng.uniform(-1, 1, shape).astype(np.float32)

    reference = models.reference(case.model).to(models.device, TORCH_DTYPES[case.dtype])
    x_torch = torch.from_numpy(np.moveaxis(x, -1, 1).copy()).to(
        models.device, TORCH_DTYPES[case.dtype]
    )
    if case.model == "vae":

        def run_torch():
            return reference.encode(x_torch).latent_dist.mean
    else:

        def run_torch():
            return reference(pixel_values=x_torch).pooler_output

    with torch.no_grad():
        torch_s = _median_seconds(run_torch, _torch_sync(models.device), repeats)

    loaded = models.ours(case.model, case.dtype)
    apply = jax.jit(loaded.apply)
    x_jax = jax.device_put(jnp.asarray(x))
    start = time.perf_counter()
    compiled = apply.lower(loaded.params, x_jax).compile()
    compile_s = time.perf_counter() - start
    ours_s = _median_seconds(lambda: compiled(loaded.params, x_jax), _jax_sync, repeats)
    ours_out = compiled(loaded.params, x_jax)
    ours_out = np.asarray(ours_out[0] if case.model == "vae" else ours_out["pooled"])
    with torch.no_grad():
        torch_out = run_torch().float().cpu().numpy()
    torch_out = np.moveaxis(torch_out, 1, -1) if case.model == "vae" else torch_out
    row = {
        "case": case.label,
        **dataclasses.asdict(case),
        "ours_s": ours_s,
        "reference_s": torch_s,
        "ratio": ours_s / torch_s,
        "compile_s": compile_s,
    }
    return row, ours_out, torch_out


def _deviations(
    ours: np.ndarray, reference: np.ndarray, reference_f32: np.ndarray | None
) -> dict[str, float]:
    """Max abs errors against the float32 PyTorch output (relative to its max abs value)."""
    if reference_f32 is None:
        return {}
    scale = float(np.abs(reference_f32).max())
    return {
        "ours_max_abs_vs_torch_f32": float(np.abs(ours - reference_f32).max()),
        "torch_max_abs_vs_torch_f32": float(np.abs(reference - reference_f32).max()),
        "torch_f32_max_abs": scale,
    }


def time_layers(device: torch.device, repeats: int) -> list[dict[str, Any]]:
    """The VAE's costliest layer kinds at the first block's shape (17 frames, 64^2, 128 ch):
    the causal conv both ways we can run it, and the chunked GroupNorm."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 17, 64, 64, 128)).astype(np.float32)
    x_jax = jnp.asarray(x)
    x_torch = torch.from_numpy(np.moveaxis(x, -1, 1).copy()).to(device)
    conv = torch.nn.Conv3d(128, 128, 3, padding=(0, 1, 1)).to(device).eval()
    x_torch_padded = torch.cat([x_torch[:, :, :1], x_torch[:, :, :1], x_torch], dim=2)
    norm = torch.nn.GroupNorm(32, 128, eps=1e-6).to(device)
    flax_norm = ChunkGroupNorm(32, 1e-6)
    norm_params = flax_norm.init(jax.random.PRNGKey(0), x_jax, (9, 8))
    jax_norm = jax.jit(lambda p, v: flax_norm.apply(p, v, (9, 8)))

    def jax_conv(conv_impl: str) -> Callable[[], Any]:
        module = CausalConv3d(128, conv_impl)
        params = module.init(jax.random.PRNGKey(0), x_jax)
        apply = jax.jit(lambda p, v: module.apply(p, v)[0])
        return lambda: apply(params, x_jax)

    pairs = {
        "causal conv3d 128->128 17x64x64 (conv3d)": (
            lambda: conv(x_torch_padded),
            jax_conv("conv3d"),
        ),
        "causal conv3d 128->128 17x64x64 (taps2d)": (
            lambda: conv(x_torch_padded),
            jax_conv("taps2d"),
        ),
        "GroupNorm(32) 2 chunks 17x64x64x128": (
            lambda: torch.cat([norm(x_torch[:, :, :9]), norm(x_torch[:, :, 9:])], 2),
            lambda: jax_norm(norm_params, x_jax),
        ),
    }
    rows = []
    with torch.no_grad():
        for name, (run_torch, run_ours) in pairs.items():
            torch_s = _median_seconds(run_torch, _torch_sync(device), repeats)
            ours_s = _median_seconds(run_ours, _jax_sync, repeats)
            rows.append(
                {"case": name, "ours_s": ours_s, "reference_s": torch_s, "ratio": ours_s / torch_s}
            )
    return rows


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'case':46s} {'ours ms':>10s} {'torch ms':>10s} {'ours/ref':>9s} {'compile s':>10s}"
        f" {'ours err':>9s} {'torch err':>9s}"
    )
    for row in rows:
        compile_s = f"{row['compile_s']:10.1f}" if "compile_s" in row else f"{'':10s}"
        errors = "".join(
            f" {row[k]:9.2e}"
            for k in ("ours_max_abs_vs_torch_f32", "torch_max_abs_vs_torch_f32")
            if k in row
        )
        print(
            f"{row['case']:46s} {row['ours_s'] * 1e3:10.1f} {row['reference_s'] * 1e3:10.1f} "
            f"{row['ratio']:9.2f} {compile_s}{errors}"
        )


def main(argv: list[str]) -> None:
    del argv
    if _DEVICE.value == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(_DEVICE.value)
    dtypes = _DTYPES.value
    repeats = 1 if _QUICK.value else _REPEATS.value
    unknown = set(dtypes) - set(JAX_DTYPES)
    if unknown:
        raise app.UsageError(f"unknown dtypes {sorted(unknown)}; use float32, bfloat16")
    print(
        f"torch {torch.__version__} on {device}; jax {jax.__version__} on "
        f"{jax.default_backend()} ({jax.devices()[0].device_kind}); "
        f"torch threads {torch.get_num_threads()}; VAE conv_impl "
        f"{resolve_conv_impl(_CONV_IMPL.value)}"
    )

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        models = Models(device, workdir)
        float32_outputs: dict[tuple[str, int, int, int], np.ndarray] = {}
        for case in cases(_MODELS.value, dtypes, _QUICK.value):
            row, ours_out, torch_out = time_case(case, models, repeats)
            shape_key = (case.model, case.batch, case.frames, case.size)
            if case.dtype == "float32":
                float32_outputs[shape_key] = torch_out
            row.update(_deviations(ours_out, torch_out, float32_outputs.get(shape_key)))
            rows.append(row)
            _print_table(rows[-1:])
    if _OPS.value:
        rows += time_layers(device, repeats)
    print()
    _print_table(rows)
    atomic_write_json(
        _OUTPUT.value,
        {
            "host": platform.node(),
            "torch_device": str(device),
            "jax_backend": jax.default_backend(),
            "jax_device": jax.devices()[0].device_kind,
            "torch": torch.__version__,
            "jax": jax.__version__,
            "repeats": repeats,
            "conv_impl": resolve_conv_impl(_CONV_IMPL.value),
            "rows": rows,
        },
    )
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
