"""absl flags choosing the models, shared by make_goals.py and finetune.py."""

from __future__ import annotations

from absl import flags

from preprocessing import models

_MODELS = flags.DEFINE_enum(
    "models",
    "tiny",
    ["pretrained", "tiny"],
    "pretrained: real weights from hub ids or local folders; tiny: the same classes with tiny "
    "configs and seeded random weights (tests, CPU quickstart).",
)
_VIDEO_MODEL = flags.DEFINE_string(
    "video_model",
    models.DEFAULT_VIDEO_MODEL,
    "CogVideoX image-to-video pipeline: hub id or local folder (its vae/ is the goal encoder).",
)
_CLIP_MODEL = flags.DEFINE_string("clip_model", models.DEFAULT_CLIP_MODEL, "OpenCLIP model name.")
_CLIP_PRETRAINED = flags.DEFINE_string(
    "clip_pretrained",
    models.DEFAULT_CLIP_PRETRAINED,
    "OpenCLIP pretrained tag, open_clip hub folder (what the online VLM-RM tower loads) or "
    "checkpoint file.",
)
_S3D_WEIGHTS = flags.DEFINE_string(
    "s3d_weights",
    None,
    "RoboCLIP baseline (pretrained mode): the released S3D-G s3d_howto100m.pth. Unset: the goal "
    "gets no RoboCLIP section.",
)
_S3D_DICT = flags.DEFINE_string(
    "s3d_dict", None, "RoboCLIP baseline: the released word dictionary s3d_dict.npy."
)
_SD_MODEL = flags.DEFINE_string(
    "sd_model",
    None,
    "TADPoLe baseline (pretrained mode): a diffusers Stable Diffusion folder or hub id (SD "
    f"2.1-base, e.g. the mirror {models.SD_MIRROR}; SD 1.5 works too). Unset: the goal gets no "
    "TADPoLe section.",
)
_DINOV3 = flags.DEFINE_string(
    "dinov3", models.DEFAULT_DINOV3, "DINOv3 ViT-S/16+: hub id or local folder."
)
_MODEL_SEED = flags.DEFINE_integer("model_seed", 0, "Seed of the tiny models' random weights.")
_TINY_DIR = flags.DEFINE_string(
    "tiny_dir",
    None,
    "Where tiny mode saves the VAE and DINOv3 for the online stage (default: <out_dir>/encoders).",
)


def model_spec_from_flags() -> models.ModelSpec:
    spec = models.ModelSpec(
        mode=_MODELS.value,
        video_model=_VIDEO_MODEL.value,
        clip_model=_CLIP_MODEL.value,
        clip_pretrained=_CLIP_PRETRAINED.value,
        dinov3=_DINOV3.value,
        s3d_weights=_S3D_WEIGHTS.value,
        s3d_dict=_S3D_DICT.value,
        sd_model=_SD_MODEL.value,
        seed=_MODEL_SEED.value,
    )
    if _TINY_DIR.value:
        spec = models.ModelSpec(**{**spec.__dict__, "tiny_dir": _TINY_DIR.value})
    return spec
