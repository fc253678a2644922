"""Goal file: the only contract between offline preprocessing (PyTorch) and the online stage (JAX).

numpy-only on purpose: the online stage reads goals without torch, and `preprocessing/` writes them
through `save_goal`, so both sides share one definition of keys, dtypes, shapes and provenance.

Layout of a goal file (an ``.npz`` zip archive, compressed, no pickles), N goal frames of S x S
pixels, K frames sampled for the VAE, P keyframe prompts:

==========================  =========  =============================================================
key                         dtype      shape / meaning
==========================  =========  =============================================================
schema_version              int64      []           SCHEMA_VERSION at write time
task                        <U         []           Meta-World task id, e.g. "pick-place-v3"
video_prompt                <U         []           prompt the goal video was made from ("" if none)
keyframe_prompts            <U         [P]          prompts whose OpenCLIP scores pick the keyframe
frames                      uint8      [N, S, S, 3] goal video, upright, at the online encoding size
frame_indices               int64      [K]          indices into frames fed to the VAE (increasing)
latent_mean                 float32    [T', h, w, C] VAE posterior MEAN of frames[frame_indices],
                                                    channels-last, no scaling factor applied
clip_scores                 float32    [N]          mean over prompts of cos(text, image)
clip_scores_per_prompt      float32    [P, N]       the per-prompt cosines behind clip_scores
keyframe_index              int64      []           argmax(clip_scores)
keyframe                    uint8      [S, S, 3]    frames[keyframe_index]
keyframe_feature            float32    [D]          DINOv3 pooled feature (pooler_output) of it
provenance                  <U         []           JSON object, see REQUIRED_PROVENANCE
placement (optional)        float64    [R]          Meta-World's object/goal placement (the task's
                                                    random vector) of the scene the video starts
                                                    from; absent when unknown (a user's file, a
                                                    first frame from another robot domain)
states (optional)           float32    [N, 39]      env state at each goal frame (scripted goals)
vlmrm_goal_text (opt.)      float32    [G, E]       open_clip text embeddings (encode_text, not
                                                    normalised) of the VLM-RM goal prompts
vlmrm_baseline_text (opt.)  float32    [Q, E]       the same for the VLM-RM baseline prompts
clip_keyframe_embedding     float32    [E]          open_clip image embedding of the keyframe (the
(opt.)                                              online tower is checked against it)
roboclip_target (opt.)      float32    [512]        S3D embedding of RoboCLIP's target (a text
                                                    prompt or the goal video); provenance
                                                    'roboclip' says which, with the clip settings
                                                    and the exported S3D folder's path and hash
tadpole_context (opt.)      float32    [2, L, D]    Stable Diffusion text embeddings (the text
                                                    encoder's last hidden states, 77 tokens) of the
                                                    empty prompt (row 0) and TADPoLe's prompt (row
                                                    1); provenance 'tadpole' gives the prompt, the
                                                    SD folder and its UNet's and VAE's hashes
==========================  =========  =============================================================

The optional keys were added within schema version 1: files without them load unchanged. The
three VLM-RM keys come together; provenance 'clip' then also gives 'vlmrm_goal_prompts',
'vlmrm_baseline_prompts' (the texts, in row order) and, when the weights lie in an open_clip
folder, its 'path', 'path_from_goal' and 'hash' (what the online VLM-RM reward loads).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
import zlib
from typing import Any

import numpy as np

from genreward_jax.atomic import atomic_path

SCHEMA_VERSION = 1

# Provenance fields the online stage relies on to refuse a goal encoded differently from how it will
# encode the agent's frames (encoder weights, resolution, frame sampling).
REQUIRED_PROVENANCE = (
    "schema_version",
    "source",  # "generate" | "scripted" | "file"
    "resolution",  # S
    "num_source_frames",  # N
    "num_sampled_frames",  # K
    "sampling",  # name of the frame sampler, see uniform_indices
    "latent_layout",  # "THWC"
    "latent_statistic",  # "mean"
    "vae",  # {"id", "path", "path_from_goal", "hash"}: weights folder and weights_hash()
    "dinov3",  # {"id", "path", "path_from_goal", "hash", "feature"}
    "clip",  # {"model", "pretrained"}
    "seed",
    "versions",  # {package: version}
)
SAMPLING_NAME = "linspace-round"


class GoalFileError(ValueError):
    """A goal file is missing, unreadable, or does not satisfy the schema; the message says why."""


def uniform_indices(num_frames: int, num_samples: int) -> np.ndarray:
    """K indices spread uniformly over [0, N-1], both ends included: round(linspace(0, N-1, K)).

    Shared by preprocessing (goal video) and the online stage (agent window) so both sample alike.
    Requires N >= K so that indices are distinct.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if num_frames < num_samples:
        raise ValueError(f"cannot sample {num_samples} distinct frames from {num_frames} frames")
    return np.round(np.linspace(0, num_frames - 1, num_samples)).astype(np.int64)


@dataclasses.dataclass
class GoalFile:
    """In-memory goal; field meanings, dtypes and shapes are in the module docstring."""

    task: str
    video_prompt: str
    keyframe_prompts: list[str]
    frames: np.ndarray
    frame_indices: np.ndarray
    latent_mean: np.ndarray
    clip_scores: np.ndarray
    clip_scores_per_prompt: np.ndarray
    keyframe_index: int
    keyframe: np.ndarray
    keyframe_feature: np.ndarray
    provenance: dict[str, Any]
    schema_version: int = SCHEMA_VERSION
    placement: np.ndarray | None = None
    states: np.ndarray | None = None
    vlmrm_goal_text: np.ndarray | None = None
    vlmrm_baseline_text: np.ndarray | None = None
    clip_keyframe_embedding: np.ndarray | None = None
    roboclip_target: np.ndarray | None = None
    tadpole_context: np.ndarray | None = None

    @property
    def has_vlmrm(self) -> bool:
        """Whether the goal carries the VLM-RM section (prompt and keyframe embeddings)."""
        return self.vlmrm_goal_text is not None

    @property
    def resolution(self) -> int:
        return int(self.frames.shape[1])

    @property
    def num_sampled_frames(self) -> int:
        return int(self.frame_indices.shape[0])

    @property
    def duration_steps(self) -> int | None:
        """Env steps the goal video spans when aligned with an episode (provenance
        'duration_steps': a scripted goal's own length, a generated goal's expert pace), or
        None when unknown (a user's file)."""
        value = self.provenance.get("duration_steps")
        return int(value) if value else None


_ARRAY_SPECS: dict[str, tuple[np.dtype, int]] = {
    "frames": (np.dtype(np.uint8), 4),
    "frame_indices": (np.dtype(np.int64), 1),
    "latent_mean": (np.dtype(np.float32), 4),
    "clip_scores": (np.dtype(np.float32), 1),
    "clip_scores_per_prompt": (np.dtype(np.float32), 2),
    "keyframe": (np.dtype(np.uint8), 3),
    "keyframe_feature": (np.dtype(np.float32), 1),
}
_OPTIONAL_SPECS: dict[str, tuple[np.dtype, int]] = {
    "placement": (np.dtype(np.float64), 1),
    "states": (np.dtype(np.float32), 2),
    "vlmrm_goal_text": (np.dtype(np.float32), 2),
    "vlmrm_baseline_text": (np.dtype(np.float32), 2),
    "clip_keyframe_embedding": (np.dtype(np.float32), 1),
    "roboclip_target": (np.dtype(np.float32), 1),
    "tadpole_context": (np.dtype(np.float32), 3),
}
VLMRM_KEYS = ("vlmrm_goal_text", "vlmrm_baseline_text", "clip_keyframe_embedding")
_SCALAR_KEYS = ("schema_version", "keyframe_index", "task", "video_prompt", "provenance")
ALL_KEYS = tuple(sorted((*_ARRAY_SPECS, *_SCALAR_KEYS, "keyframe_prompts")))


def validate_goal(goal: GoalFile, source: str = "goal") -> None:
    """Checks dtypes, shapes and cross-field consistency; GoalFileError names the problem."""

    def fail(msg: str) -> None:
        raise GoalFileError(f"{source}: {msg}")

    if goal.schema_version != SCHEMA_VERSION:
        fail(
            f"schema version {goal.schema_version} does not match this code's {SCHEMA_VERSION}; "
            "re-run preprocessing/make_goals.py to rebuild the goal"
        )
    optional = {k: spec for k, spec in _OPTIONAL_SPECS.items() if getattr(goal, k) is not None}
    for key, (dtype, ndim) in {**_ARRAY_SPECS, **optional}.items():
        value = getattr(goal, key)
        if not isinstance(value, np.ndarray):
            fail(f"'{key}' must be a numpy array, got {type(value).__name__}")
        if value.dtype != dtype:
            fail(f"'{key}' has dtype {value.dtype}, expected {dtype}")
        if value.ndim != ndim:
            fail(f"'{key}' has shape {value.shape}, expected {ndim} dimensions")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            fail(f"'{key}' contains NaN or infinite values")
    n, s_h, s_w, c = goal.frames.shape
    if n < 1 or c != 3 or s_h != s_w or s_h < 1:
        fail(f"'frames' has shape {goal.frames.shape}, expected [N>=1, S, S, 3]")
    k = goal.frame_indices.shape[0]
    if k < 1 or goal.frame_indices.min() < 0 or goal.frame_indices.max() >= n:
        fail(f"'frame_indices' must be {k} indices within [0, {n - 1}], got {goal.frame_indices}")
    if np.any(np.diff(goal.frame_indices) <= 0):
        fail(f"'frame_indices' must be strictly increasing, got {goal.frame_indices}")
    if min(goal.latent_mean.shape) < 1:
        fail(f"'latent_mean' has an empty axis: {goal.latent_mean.shape} ([T', h, w, C])")
    if goal.states is not None and goal.states.shape[0] != n:
        fail(f"'states' has {goal.states.shape[0]} rows for {n} frames")
    _validate_vlmrm(goal, fail)
    if goal.roboclip_target is not None:
        entry = goal.provenance.get("roboclip") if isinstance(goal.provenance, dict) else None
        needed = ("id", "target", "crop", "stride", "pixel_range", "hash")
        if not isinstance(entry, dict) or any(k not in entry for k in needed):
            fail(
                f"'roboclip_target' needs provenance 'roboclip' with {', '.join(needed)}, got "
                f"{entry!r}"
            )
    if goal.tadpole_context is not None:
        entry = goal.provenance.get("tadpole") if isinstance(goal.provenance, dict) else None
        needed = ("id", "prompt", "unet_hash", "vae_hash")
        if not isinstance(entry, dict) or any(k not in entry for k in needed):
            fail(
                f"'tadpole_context' needs provenance 'tadpole' with {', '.join(needed)}, got "
                f"{entry!r}"
            )
        if goal.tadpole_context.shape[0] != 2:
            fail(
                f"'tadpole_context' has shape {goal.tadpole_context.shape}, expected [2, L, D] "
                "(empty prompt, TADPoLe prompt)"
            )
    if goal.clip_scores.shape != (n,):
        fail(f"'clip_scores' has shape {goal.clip_scores.shape}, expected ({n},) (one per frame)")
    p = len(goal.keyframe_prompts)
    if p < 1 or not all(isinstance(t, str) and t for t in goal.keyframe_prompts):
        fail("'keyframe_prompts' must hold at least one non-empty prompt")
    if goal.clip_scores_per_prompt.shape != (p, n):
        fail(
            f"'clip_scores_per_prompt' has shape {goal.clip_scores_per_prompt.shape}, "
            f"expected ({p}, {n}) (prompts x frames)"
        )
    if not np.allclose(goal.clip_scores_per_prompt.mean(axis=0), goal.clip_scores, atol=1e-5):
        fail("'clip_scores' is not the mean of 'clip_scores_per_prompt'")
    if not 0 <= goal.keyframe_index < n:
        fail(f"'keyframe_index' {goal.keyframe_index} is outside [0, {n - 1}]")
    if goal.keyframe_index != int(np.argmax(goal.clip_scores)):
        fail(
            f"'keyframe_index' {goal.keyframe_index} is not argmax(clip_scores) "
            f"= {int(np.argmax(goal.clip_scores))}"
        )
    if not np.array_equal(goal.keyframe, goal.frames[goal.keyframe_index]):
        fail("'keyframe' differs from frames[keyframe_index]")
    if goal.keyframe_feature.shape[0] < 1:
        fail("'keyframe_feature' is empty")
    if not goal.task:
        fail("'task' is empty")
    _validate_provenance(goal, fail)


def _validate_vlmrm(goal: GoalFile, fail) -> None:
    present = [k for k in VLMRM_KEYS if getattr(goal, k) is not None]
    if not present:
        return
    if len(present) != len(VLMRM_KEYS):
        fail(
            f"the VLM-RM section needs all of {', '.join(VLMRM_KEYS)}, got only "
            f"{', '.join(present)}"
        )
    dims = {
        goal.vlmrm_goal_text.shape[1],
        goal.vlmrm_baseline_text.shape[1],
        goal.clip_keyframe_embedding.shape[0],
    }
    if len(dims) != 1:
        fail(f"the VLM-RM embeddings disagree in size: {sorted(dims)}")
    clip = goal.provenance.get("clip", {}) if isinstance(goal.provenance, dict) else {}
    for key, rows in (
        ("vlmrm_goal_prompts", goal.vlmrm_goal_text.shape[0]),
        ("vlmrm_baseline_prompts", goal.vlmrm_baseline_text.shape[0]),
    ):
        texts = clip.get(key)
        if not isinstance(texts, list) or len(texts) != rows or rows < 1:
            fail(
                f"provenance 'clip' must list the {rows} {key} its embeddings belong to, got "
                f"{texts!r}"
            )


def _validate_provenance(goal: GoalFile, fail) -> None:
    prov = goal.provenance
    if not isinstance(prov, dict):
        fail(f"'provenance' must be a JSON object, got {type(prov).__name__}")
    missing = [key for key in REQUIRED_PROVENANCE if key not in prov]
    if missing:
        fail(f"'provenance' lacks {', '.join(missing)}")
    for model in ("vae", "dinov3"):
        entry = prov[model]
        if not isinstance(entry, dict) or not all(entry.get(f) for f in ("id", "hash")):
            fail(f"provenance '{model}' must give at least 'id' and 'hash', got {entry!r}")
    expected = {
        "schema_version": goal.schema_version,
        "resolution": goal.resolution,
        "num_source_frames": int(goal.frames.shape[0]),
        "num_sampled_frames": goal.num_sampled_frames,
        "latent_layout": "THWC",
        "latent_statistic": "mean",
    }
    for key, value in expected.items():
        if prov[key] != value:
            fail(f"provenance '{key}' is {prov[key]!r} but the arrays say {value!r}")
    if prov["sampling"] == SAMPLING_NAME:
        want = uniform_indices(int(goal.frames.shape[0]), goal.num_sampled_frames)
        if not np.array_equal(goal.frame_indices, want):
            fail(f"'frame_indices' {goal.frame_indices} do not follow '{SAMPLING_NAME}' ({want})")


def check_goal_matches(
    goal: GoalFile,
    *,
    resolution: int | None = None,
    num_sampled_frames: int | None = None,
    vae_hash: str | None = None,
    dinov3_hash: str | None = None,
) -> None:
    """Refuses a goal encoded differently from how the online stage will encode agent frames.

    Each given expectation is compared with the goal's provenance; the error names every mismatch.
    """
    prov = goal.provenance
    checks = [
        ("resolution", resolution, prov["resolution"]),
        ("num_sampled_frames", num_sampled_frames, prov["num_sampled_frames"]),
        ("vae weights hash", vae_hash, prov["vae"]["hash"]),
        ("dinov3 weights hash", dinov3_hash, prov["dinov3"]["hash"]),
    ]
    problems = [
        f"{name}: goal has {have!r}, online stage uses {want!r}"
        for name, want, have in checks
        if want is not None and want != have
    ]
    if problems:
        raise GoalFileError(
            "goal was encoded differently from the online stage (" + "; ".join(problems) + ")"
        )


def encoder_folder(goal_path: str | os.PathLike, goal: GoalFile, encoder: str) -> str:
    """Folder of the 'vae', 'dinov3', 'clip', 'roboclip' (S3D) or 'tadpole' (Stable Diffusion)
    weights the goal was encoded with.

    Prefers the path relative to the goal file (so a goal folder can be moved or copied with its
    encoders/), then the absolute path recorded at write time.
    """
    entry = goal.provenance[encoder]
    candidates = []
    if entry.get("path_from_goal"):
        folder = os.path.dirname(os.path.abspath(os.fspath(goal_path)))
        candidates.append(os.path.normpath(os.path.join(folder, entry["path_from_goal"])))
    if entry.get("path"):
        candidates.append(entry["path"])
    for candidate in candidates:
        if os.path.isdir(candidate):
            return candidate
    raise GoalFileError(
        f"{goal_path}: the {encoder} weights it was encoded with ({entry.get('id')}) are not at "
        f"{' or '.join(candidates) or 'any recorded path'}"
    )


def _to_arrays(goal: GoalFile) -> dict[str, np.ndarray]:
    arrays = {key: getattr(goal, key) for key in _ARRAY_SPECS}
    arrays.update({k: getattr(goal, k) for k in _OPTIONAL_SPECS if getattr(goal, k) is not None})
    arrays["schema_version"] = np.asarray(goal.schema_version, dtype=np.int64)
    arrays["keyframe_index"] = np.asarray(goal.keyframe_index, dtype=np.int64)
    arrays["task"] = np.asarray(goal.task, dtype=np.str_)
    arrays["video_prompt"] = np.asarray(goal.video_prompt, dtype=np.str_)
    arrays["keyframe_prompts"] = np.asarray(list(goal.keyframe_prompts), dtype=np.str_)
    arrays["provenance"] = np.asarray(json.dumps(goal.provenance, sort_keys=True), dtype=np.str_)
    return arrays


def save_goal(path: str | os.PathLike, goal: GoalFile) -> None:
    """Validates, then writes atomically (``atomic.atomic_path``, fsync before the rename)."""
    path = os.fspath(path)
    validate_goal(goal, source=f"refusing to write {path}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **_to_arrays(goal))
        f.flush()
        os.fsync(f.fileno())


def _scalar(arrays: dict[str, np.ndarray], key: str, kind: str, fail):
    value = arrays[key]
    if value.ndim != 0 or value.dtype.kind != kind:
        fail(f"'{key}' must be a scalar of kind '{kind}', got {value.dtype} of shape {value.shape}")
    return value.item()


def load_goal(path: str | os.PathLike) -> GoalFile:
    """Reads and validates a goal file; every failure is a GoalFileError naming file and cause."""
    path = os.fspath(path)

    def fail(msg: str) -> None:
        raise GoalFileError(f"{path}: {msg}")

    if not os.path.isfile(path):
        fail("no such goal file (make one with preprocessing/make_goals.py)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            present = set(archive.files)
            missing = sorted(set(ALL_KEYS) - present)
            if missing:
                fail(f"missing key(s) {', '.join(missing)} (not a goal file, or an older schema)")
            arrays = {key: archive[key] for key in ALL_KEYS}
            optional = {key: archive[key] for key in _OPTIONAL_SPECS if key in present}
    except GoalFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as err:
        fail(f"not a readable goal file (truncated or corrupt?): {type(err).__name__}: {err}")

    version = _scalar(arrays, "schema_version", "i", fail)
    if version != SCHEMA_VERSION:
        fail(
            f"schema version {version} does not match this code's {SCHEMA_VERSION}; "
            "re-run preprocessing/make_goals.py to rebuild the goal"
        )
    prompts = arrays["keyframe_prompts"]
    if prompts.ndim != 1 or prompts.dtype.kind != "U":
        fail(f"'keyframe_prompts' must be a 1-D string array, got {prompts.dtype} {prompts.shape}")
    try:
        provenance = json.loads(_scalar(arrays, "provenance", "U", fail))
    except json.JSONDecodeError as err:
        fail(f"'provenance' is not valid JSON: {err}")
    goal = GoalFile(
        task=_scalar(arrays, "task", "U", fail),
        video_prompt=_scalar(arrays, "video_prompt", "U", fail),
        keyframe_prompts=[str(p) for p in prompts],
        keyframe_index=_scalar(arrays, "keyframe_index", "i", fail),
        provenance=provenance,
        schema_version=version,
        **{key: arrays[key] for key in _ARRAY_SPECS},
        **optional,
    )
    validate_goal(goal, source=path)
    return goal
