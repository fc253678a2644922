"""Data parallelism for the train step: a device mesh, the batch split along B, everything else
replicated. JAX's SPMD partitioner does the rest (the gradient all-reduce included), so the
jitted train step is the same function on one device or many.

    parallel = DataParallel.create(4)          # the first 4 devices (all hosts' devices with
    state = parallel.replicate(state)          # jax.distributed); None for 1
    batch = parallel.shard_batch(batch)        # [B, ...] leaves, B divisible by the devices
    state, metrics, context = agent.train(state, batch, key)

Across hosts (``initialize_distributed``), each process contributes its own replay's batch as
its part of the global batch (``jax.make_array_from_process_local_data``) and the mesh spans
every process's devices. The policy keeps running on the replicated parameters: acting is cheap
next to training, and a replicated computation needs no transfer of parameters after every
update.

Sampling noise is drawn inside the step from its key with partitionable Threefry (JAX's
default), so a sharded step draws the same numbers as an unsharded one; results differ only by
the order of the gradient's reductions (float tolerance).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


@dataclasses.dataclass(frozen=True)
class DataParallel:
    mesh: Mesh

    @classmethod
    def create(cls, devices: int) -> DataParallel | None:
        """A mesh over the first `devices` devices (0: all of them); None for one device."""
        available = jax.devices()
        count = len(available) if devices == 0 else devices
        if count < 1 or count > len(available):
            raise ValueError(
                f"--train_devices={devices}: {len(available)} device(s) available "
                f"({available[0].platform}); 0 uses all of them"
            )
        if count == 1:
            return None
        return cls(Mesh(np.asarray(available[:count]), (AXIS,)))

    @property
    def size(self) -> int:
        return self.mesh.size

    def check_batch_size(self, batch_size: int) -> None:
        local = self.size // jax.process_count()
        if batch_size % local:
            raise ValueError(
                f"--batch_size={batch_size} must split evenly over this process's {local} train "
                "devices (data parallelism splits the batch along B)"
            )

    def replicate(self, tree: Any) -> Any:
        """Every leaf on every device of the mesh (parameters, optimizer state, keys)."""
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def shard_batch(self, batch: dict[str, Any]) -> dict[str, jax.Array]:
        """Leaves [B_local, ...] of this process -> global arrays split along B."""
        sharding = NamedSharding(self.mesh, PartitionSpec(AXIS))
        return {
            key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
            for key, value in batch.items()
        }


DISTRIBUTED_MODES = ("auto", "on", "off")


def initialize_distributed(mode: str) -> bool:
    """--distributed: 'off' (one process), 'auto' (``jax.distributed.initialize()`` where a
    multi-process job is detected: SLURM with several tasks, a TPU pod slice, or the
    JAX_COORDINATOR_ADDRESS variable), 'on' (initialise, failing loudly if JAX finds no
    cluster). Returns whether it initialised. Call before anything else touches JAX."""
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(f"--distributed must be one of {DISTRIBUTED_MODES}, got {mode!r}")
    if mode == "off" or (mode == "auto" and not cluster_detected()):
        return False
    jax.distributed.initialize()
    return True


def cluster_detected(environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return True
    if "," in env.get("TPU_WORKER_HOSTNAMES", ""):
        return True
    return bool(env.get("SLURM_JOB_ID")) and int(env.get("SLURM_NTASKS", "1")) > 1
