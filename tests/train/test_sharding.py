"""Data parallelism on 4 CPU devices (XLA's host-platform device count, in a subprocess: the
device count is fixed when JAX starts): the sharded train step equals the single-device one
within float tolerance, and a sharded run checkpoints and resumes to the parameters of an
uninterrupted one."""

import json
import os
import subprocess
import sys

import pytest

from genreward_jax.sharding import DataParallel, cluster_detected

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STEP_SCRIPT = """
import json
import jax, numpy as np
from genreward_jax.dreamer import Agent, preset
from genreward_jax.sharding import DataParallel
from tests.batches import replay_batch

config = preset("tiny", compute_dtype="float32")
agent = Agent(config, {"state": ((39,), np.float32)}, 4)
batch = replay_batch(config, batch=4, length=6, features={"state": (39,)})
host_batch = {k: np.asarray(v) for k, v in batch.items()}
single, metrics, context = agent.train(agent.init(jax.random.key(0)), batch, jax.random.key(1))
parallel = DataParallel.create(4)
state = parallel.replicate(agent.init(jax.random.key(0)))
sharded, sharded_metrics, sharded_context = agent.train(
    state, parallel.shard_batch(host_batch), jax.random.key(1)
)
initial = jax.tree.leaves(agent.init(jax.random.key(0)).params)
pairs = list(zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params)))
print(json.dumps({
    "devices": len(jax.devices()),
    "param_max_abs": max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in pairs),
    "update_max_abs": max(
        float(np.abs(np.asarray(a) - np.asarray(i)).max()) for (a, _), i in zip(pairs, initial)
    ),
    "loss": [float(metrics["loss/total"]), float(sharded_metrics["loss/total"])],
    "context_max_abs": float(np.abs(
        np.asarray(context["deter"]) - np.asarray(sharded_context["deter"])).max()),
    "replicated": all(x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded.params)),
    "batch_devices": len(parallel.shard_batch(host_batch)["state"].sharding.device_set),
}))
"""

RESUME_SCRIPT = """
import contextlib, io, json, sys
import jax, numpy as np
from genreward_jax.dreamer import Agent, preset
from genreward_jax.envs import EnvConfig
from genreward_jax.trainer import Trainer
from tests.tiny_runs import tiny_trainer_config

root = sys.argv[1]
config = preset("tiny", compute_dtype="float32")
agents = {}

def factory(spec, act):
    return agents.setdefault("agent", Agent(config, spec, act))

def run(name, steps):
    cfg = tiny_trainer_config(
        f"{root}/{name}", steps=steps, batch_size=4, train_devices=4, checkpoint_every=40,
        keep_checkpoints=2, log_every=20,
    )
    envs = [EnvConfig("reach", seed=3, time_limit=20)]
    evals = [EnvConfig("reach", seed=9, time_limit=20)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = Trainer(cfg, factory, envs, evals).run()
    return result, printed.getvalue()

full, _ = run("full", 80)
run("resumed", 40)                   # stops after its checkpoint at 40 ...
resumed, printed = run("resumed", 80)  # ... and the same run goes on from it
pairs = list(zip(jax.tree.leaves(full["train_state"].params),
                 jax.tree.leaves(resumed["train_state"].params)))
print(json.dumps({
    "updates": [full["updates"], resumed["updates"]],
    "resumed": "resumed from checkpoint at env step 40" in printed,
    "data_parallel": "data-parallel over 4 devices" in printed,
    "max_abs": max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in pairs),
    "replicated": all(
        x.sharding.is_fully_replicated for x in jax.tree.leaves(resumed["train_state"].params)
    ),
}))
"""


def run_on_four_devices(script, *args):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": ROOT,
    }
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_sharded_step_equals_the_single_device_step():
    report = run_on_four_devices(STEP_SCRIPT)
    assert report["devices"] == 4 and report["batch_devices"] == 4
    assert report["replicated"]  # the parameters come back replicated, not split
    # the update itself is small (one step of lr 4e-5): compare the two updates with each other
    assert report["update_max_abs"] > 1e-6
    assert report["param_max_abs"] <= 1e-3 * report["update_max_abs"]
    assert abs(report["loss"][0] - report["loss"][1]) <= 1e-5 * abs(report["loss"][0])
    assert report["context_max_abs"] <= 1e-5


@pytest.mark.slow
def test_sharded_run_checkpoints_and_resumes(tmp_path):
    report = run_on_four_devices(RESUME_SCRIPT, str(tmp_path))
    assert report["resumed"] and report["data_parallel"]
    assert report["updates"][0] == report["updates"][1] > 0
    assert report["replicated"]
    assert report["max_abs"] == 0.0  # exact, as the single-device resume


def test_one_device_needs_no_mesh_and_bad_counts_are_refused():
    assert DataParallel.create(1) is None
    with pytest.raises(ValueError, match="device"):
        DataParallel.create(64)


def test_cluster_detection():
    assert not cluster_detected({})
    assert not cluster_detected({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"})
    assert cluster_detected({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"})
    assert cluster_detected({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert cluster_detected({"TPU_WORKER_HOSTNAMES": "a,b"})
