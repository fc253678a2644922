"""DreamerV3 hyperparameters as a plain dataclass, with the official size presets.

Defaults are the current official DreamerV3 (Nature 2025 version) at the 200m size; ``preset``
returns the other sizes. Library code and tests use this dataclass directly so they do not
depend on absl flags being parsed.
"""

from __future__ import annotations

import dataclasses

# The official size presets (DreamerV3's configs.yaml); blocks 8 and stoch 32 are fixed.
_SIZES = {
    "1m": dict(deter=512, hidden=64, classes=4, depth=4, units=64),
    "12m": dict(deter=2048, hidden=256, classes=16, depth=16, units=256),
    "25m": dict(deter=3072, hidden=384, classes=24, depth=24, units=384),
    "50m": dict(deter=4096, hidden=512, classes=32, depth=32, units=512),
    "100m": dict(deter=6144, hidden=768, classes=48, depth=48, units=768),
    "200m": dict(deter=8192, hidden=1024, classes=64, depth=64, units=1024),
    "400m": dict(deter=12288, hidden=1536, classes=96, depth=96, units=1536),
}
PRESETS = (*_SIZES, "tiny")
# Fields that change how the train step compiles, not what it computes (no official counterpart).
COMPILE_FIELDS = ("remat_observe", "scan_unroll")
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class DreamerConfig:
    """All agent hyperparameters. Field groups follow the paper's sections."""

    # Sizes.
    deter: int = 8192
    hidden: int = 1024
    stoch: int = 32
    classes: int = 64
    blocks: int = 8  # block GRU of the RSSM
    dec_blocks: int = 8  # block-linear from deter in the image decoder (official `bspace`)
    depth: int = 64
    units: int = 1024
    cnn_mults: tuple[int, ...] = (2, 3, 4, 4)
    kernel: int = 5
    enc_layers: int = 3
    dec_layers: int = 3
    head_layers: int = 1  # reward and continue heads
    ac_layers: int = 3  # actor and critic
    bins: int = 255
    # Numerics: parameters are always float32; matmuls/convs run in compute_dtype.
    compute_dtype: str = "bfloat16"
    norm_eps: float = 1e-4
    # Observation keys used by the encoder/decoder when present in obs_spec.
    image_keys: tuple[str, ...] = ("image",)
    vector_keys: tuple[str, ...] = ("state",)
    # RSSM.
    unimix: float = 0.01
    # How the RSSM's scans compile (same mathematics either way): rematerialise each observe
    # step in the backward pass (a plain scan: smaller residuals, every step's forward run
    # twice; off: the observe scan is a hoisted_scan, its kernels' gradients computed after
    # the backward loop), and how many steps one loop iteration of the observe and imagine
    # scans holds (1: a rolled loop; more compiles longer).
    remat_observe: bool = False
    scan_unroll: int = 1
    free_nats: float = 1.0
    # Loss scales.
    scale_rec: float = 1.0
    scale_rew: float = 1.0
    scale_con: float = 1.0
    scale_dyn: float = 1.0
    scale_rep: float = 0.1
    scale_policy: float = 1.0
    scale_value: float = 1.0
    scale_repval: float = 0.3
    # Behaviour learning.
    imag_horizon: int = 15
    horizon: int = 333  # continue target and replay discount use 1 - 1/horizon
    lam: float = 0.95
    actent: float = 3e-4
    slowreg: float = 1.0
    slow_rate: float = 0.02
    retnorm_rate: float = 0.01
    retnorm_limit: float = 1.0
    retnorm_lo: float = 5.0
    retnorm_hi: float = 95.0
    policy_minstd: float = 0.1
    policy_maxstd: float = 1.0
    policy_outscale: float = 0.01
    # Optimizer (LaProp chain).
    lr: float = 4e-5
    agc: float = 0.3
    agc_pmin: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-20
    warmup: int = 1000

    def __post_init__(self) -> None:
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}"
            )
        for name in ("blocks", "dec_blocks"):
            if self.deter % getattr(self, name):
                raise ValueError(
                    f"deter ({self.deter}) must be divisible by {name} ({getattr(self, name)})"
                )
        for name in ("head_layers", "ac_layers"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"{name} must be at least 1 (the heads' first layers run apart from the "
                    f"rest on imagined rows), got {getattr(self, name)}"
                )
        if self.bins % 2 == 0:
            raise ValueError(f"bins must be odd so that zero is a bin, got {self.bins}")

    @property
    def feat_size(self) -> int:
        """Width of concat(deter, flat stoch), the input of every head."""
        return self.deter + self.stoch * self.classes


def preset(name: str, **overrides) -> DreamerConfig:
    """Config for a size preset ('1m' ... '400m', or 'tiny' for tests) with field overrides."""
    if name == "tiny":
        base = dict(
            deter=32,
            hidden=16,
            stoch=4,
            classes=4,
            blocks=4,
            dec_blocks=4,
            depth=2,
            units=16,
            bins=15,
            enc_layers=1,
            dec_layers=1,
            ac_layers=2,
            warmup=0,
            compute_dtype="float32",
        )
    elif name in _SIZES:
        base = dict(_SIZES[name])
    else:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
    base.update(overrides)
    return DreamerConfig(**base)
