"""Run logging: metrics.jsonl truncation on resume, TensorBoard, mp4, flags file, curve PNG."""

import json
import os
import warnings

import imageio.v2 as imageio
import numpy as np
import pytest
from absl import flags

from genreward_jax import curves, media, metrics_log, run_flags


def test_resume_truncates_records_past_the_checkpoint_and_a_torn_line(tmp_path):
    logger = metrics_log.MetricsLogger(str(tmp_path))
    for step in (10, 20, 30):
        logger.write(step, {"loss": np.float32(step / 10), "name": "not a scalar"})
    logger.close()
    with open(tmp_path / metrics_log.METRICS_FILE, "a") as f:
        f.write('{"step": 40, "lo')  # killed mid-write
    resumed = metrics_log.MetricsLogger(str(tmp_path), resume_step=20)
    resumed.write(30, {"loss": 7.0})
    resumed.close()
    records = metrics_log.read_metrics(str(tmp_path))
    assert records == [
        {"step": 10, "loss": 1.0},
        {"step": 20, "loss": 2.0},
        {"step": 30, "loss": 7.0},
    ]
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(tmp_path / "tb"))


def test_video_is_a_readable_mp4_with_every_frame(tmp_path):
    frames = np.zeros((12, 64, 64, 3), np.uint8)
    frames[:, :32] = 200  # top half bright: orientation survives encoding
    path = str(tmp_path / "clip.mp4")
    media.write_video(path, frames, fps=10)
    with warnings.catch_warnings():  # JAX (imported by other tests) warns on fork+exec
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        decoded = np.stack([frame for frame in imageio.get_reader(path)])  # list(): len is inf
    assert decoded.shape == frames.shape
    assert decoded[:, :28].mean() > 150 and decoded[:, 36:].mean() < 50
    assert os.listdir(tmp_path) == ["clip.mp4"]
    with pytest.raises(ValueError, match="uint8"):
        media.write_video(path, frames.astype(np.float32))


def test_flags_file_round_trips_through_a_flag_parser(tmp_path):
    values = flags.FlagValues()
    flags.DEFINE_integer("steps", 5, "", flag_values=values, module_name="genreward_jax.x")
    flags.DEFINE_bool("video", True, "", flag_values=values, module_name="genreward_jax.x")
    flags.DEFINE_list("obs_keys", ["image"], "", flag_values=values, module_name="genreward_jax.x")
    flags.DEFINE_integer("other", 1, "", flag_values=values, module_name="absl.elsewhere")
    values(["prog", "--steps=7", "--novideo", "--obs_keys=state,image", "--other=3"])
    path = run_flags.write_flags(str(tmp_path), values)
    text = open(path).read()
    assert "--other" not in text
    again = flags.FlagValues()
    flags.DEFINE_integer("steps", 5, "", flag_values=again)
    flags.DEFINE_bool("video", True, "", flag_values=again)
    flags.DEFINE_list("obs_keys", ["image"], "", flag_values=again)
    again(["prog", f"--flagfile={path}"])
    assert (again.steps, again.video, again.obs_keys) == (7, False, ["state", "image"])


def test_learning_curve_png_from_eval_records(tmp_path):
    with open(tmp_path / metrics_log.METRICS_FILE, "w") as f:
        for step, ret in ((100, 1.0), (200, 3.0)):
            f.write(json.dumps({"step": step, "eval/return": ret, "eval/success": 0.5}) + "\n")
    path = curves.plot_learning_curve(str(tmp_path))
    assert path and imageio.imread(path).shape[1] > 400
    assert curves.plot_learning_curve(str(tmp_path / "empty")) is None
