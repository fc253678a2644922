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


def _read_tfrecords(path):
    """Payloads of a TFRecord file, each frame's two CRCs checked with tensorboardX's CRC-32C
    (an implementation independent of ours)."""
    import struct

    from tensorboardX.crc32c import crc32c

    def masked(data):
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    data, payloads, at = open(path, "rb").read(), [], 0
    while at < len(data):
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[at + 8 : at + 12])[0] == masked(header)
        payload = data[at + 12 : at + 12 + length]
        assert struct.unpack("<I", data[at + 12 + length : at + 16 + length])[0] == masked(payload)
        payloads.append(payload)
        at += 16 + length
    return payloads


def test_tensorboard_events_parse_as_tensorboards_protos(tmp_path):
    """Our hand-written event files, decoded with the Event/Summary/SessionLog protobuf classes
    tensorboardX ships: the version header, one summary per write, the purge marker."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    from genreward_jax.tensorboard_events import crc32c

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    logger = metrics_log.MetricsLogger(str(tmp_path))
    logger.write(5, {"loss": np.float32(0.25), "eval/return": -3, "nan": float("nan")})
    logger.write(2**40, {"loss": 1.5})
    logger.close()
    resumed = metrics_log.MetricsLogger(str(tmp_path), resume_step=5)
    resumed.close()
    first, second = sorted(os.listdir(tmp_path / "tb"), key=lambda n: int(n.split(".")[-1]))[:2]
    events = [Event.FromString(p) for p in _read_tfrecords(tmp_path / "tb" / first)]
    assert events[0].file_version == "brain.Event:2"
    assert [(e.step, {v.tag: v.simple_value for v in e.summary.value}) for e in events[1:]] == [
        (5, {"loss": 0.25, "eval/return": -3.0}),  # the NaN is left out
        (2**40, {"loss": 1.5}),
    ]
    assert all(abs(e.wall_time - events[0].wall_time) < 60 for e in events)
    purge = [Event.FromString(p) for p in _read_tfrecords(tmp_path / "tb" / second)]
    assert purge[1].step == 5 and purge[1].session_log.status == SessionLog.START


def test_metrics_logging_keeps_torch_out_of_the_process(tmp_path):
    """Training processes run Flax ports only; tensorboardX's writer would import torch."""
    import subprocess
    import sys

    code = (
        "import sys; from genreward_jax import metrics_log; "
        f"log = metrics_log.MetricsLogger({str(tmp_path)!r}); log.write(1, {{'a': 1.0}}); "
        "log.close(); assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
