"""Pretrained mode without cached weights and without network fails with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from preprocessing import models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def empty_offline_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


@pytest.mark.parametrize(
    ("loader", "message"),
    [
        (models.load_vae, "CogVideoX VAE: 'THUDM/CogVideoX-5b-I2V' is not in the local"),
        (models.load_dinov3, "DINOv3: 'facebook/dinov3-vits16plus-pretrain-lvd1689m' is not in"),
        (models.load_pipeline, "CogVideoX image-to-video: 'THUDM/CogVideoX-5b-I2V' is not in"),
        (models.load_clip, "OpenCLIP: weights 'ViT-B-32' / 'laion2b_s34b_b79k' are not cached"),
    ],
)
def test_each_pretrained_loader_names_the_missing_model(empty_offline_hub, loader, message):
    with pytest.raises(models.ModelUnavailableError, match=message):
        loader(models.ModelSpec(mode="pretrained"))


def test_a_missing_local_folder_is_named():
    with pytest.raises(models.ModelUnavailableError, match="neither an existing folder nor a hub"):
        models.resolve_folder("./no/such/folder", "DINOv3", "dinov3")


def test_make_goals_cli_offline_prints_one_line_not_a_traceback(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "preprocessing/make_goals.py",
            "--models=pretrained",
            "--goal_source=generate",
            f"--out_dir={tmp_path / 'out'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("make_goals: error: CogVideoX VAE: 'THUDM/CogVideoX-5b-I2V'")
    assert "HF_HUB_OFFLINE is set" in last and "--video_model" in last
    assert not (tmp_path / "out" / "goal.npz").exists()
