"""Flax S3D-G video tower vs our PyTorch S3D-G (preprocessing/s3d.py), random weights.

Every parameter is random, BatchNorm's affines included, and its running statistics are measured
(``models.tiny_s3d``: with the defaults, 0/1, a dropped or swapped one would hide and the output
would not depend on the input); exported the way RoboCLIP's goals export the released weights
and loaded by the online loader."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from genreward_jax.encoders import load_s3d_video, weights_hash
from genreward_jax.encoders.s3d import same_max_pool
from genreward_jax.encoders.weights import CheckpointError
from preprocessing.models import tiny_s3d
from preprocessing.s3d import S3D, export_video_tower
from preprocessing.s3d import same_max_pool as torch_same_max_pool


def random_s3d(seed: int = 0) -> S3D:
    return tiny_s3d(seed, ["robot", "arm", "opens", "the", "door"])


@pytest.fixture(scope="module")
def s3d_pair(tmp_path_factory):
    model = random_s3d()
    folder = export_video_tower(model, str(tmp_path_factory.mktemp("s3d")))
    return model, folder


def test_video_tower_matches_pytorch(s3d_pair):
    model, folder = s3d_pair
    video = np.random.default_rng(0).uniform(0, 255, (2, 8, 48, 48, 3)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(video).permute(0, 4, 1, 2, 3)).numpy()
    tower = load_s3d_video(folder)
    with jax.default_matmul_precision("highest"):
        got = np.asarray(jax.jit(tower.apply)(tower.params, jnp.asarray(video)))
    assert got.shape == (2, 512)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max(), rtol=1e-4)
    assert np.abs(want[0] - want[1]).max() > 1e-3 * np.abs(want).max()  # inputs told apart


@pytest.mark.parametrize(
    "size, kernel, stride",
    [(7, (1, 3, 3), (1, 2, 2)), (8, (3, 3, 3), (2, 2, 2)), (5, (2, 2, 2), (2, 2, 2))],
)
def test_same_max_pool_matches_the_release_padding(size, kernel, stride):
    x = np.random.default_rng(1).normal(size=(1, size, size, size, 2)).astype(np.float32)
    want = torch_same_max_pool(torch.from_numpy(x).permute(0, 4, 1, 2, 3), kernel, stride)
    got = np.asarray(same_max_pool(jnp.asarray(x), kernel, stride))
    np.testing.assert_array_equal(got, want.permute(0, 2, 3, 4, 1).numpy())


def test_export_is_hashed_and_bad_folders_are_named(s3d_pair, tmp_path):
    _, folder = s3d_pair
    assert len(weights_hash(folder)) == 64
    with pytest.raises(CheckpointError, match="s3d_config.json"):
        load_s3d_video(tmp_path)
    with pytest.raises(ValueError, match="even number"):
        load_s3d_video(folder).apply(load_s3d_video(folder).params, jnp.zeros((1, 7, 32, 32, 3)))


def test_missing_released_weights_are_named_with_their_flag(tmp_path):
    from preprocessing.models import ModelSpec, ModelUnavailableError, load_s3d

    spec = ModelSpec(
        mode="pretrained",
        s3d_weights=str(tmp_path / "s3d_howto100m.pth"),
        s3d_dict=str(tmp_path / "s3d_dict.npy"),
    )
    with pytest.raises(ModelUnavailableError, match="--s3d_weights") as error:
        load_s3d(spec, [])
    assert len(str(error.value).splitlines()) == 1
    assert load_s3d(ModelSpec(mode="pretrained"), []) is None  # no weights: no RoboCLIP section
