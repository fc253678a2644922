"""The parameters the policy acts with: where they live, and when they are a copy.

The train step donates its state (``Agent.train`` reuses the old state's buffers for the new
one), so whoever keeps acting while the learner updates, the async loop's actor or a policy on
another device, must hold its own copy. ``PolicyPublisher.publish`` makes it: only what acting
reads (the agent's parameters, the extra loss's parameters and state; the optimizer state is
left out), on ``--policy_device`` or beside the train step's parameters. In the synchronous loop
without a policy device the policy reads the train state itself, as it always has (no copy, the
same compiled policy, exact resume).

``--policy_device``: "" (with the train step), "cpu" (the host: keeps a GPU free for learning when
acting is cheap), or the index of a local device (e.g. a second GPU).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def parse_policy_device(spec: str) -> str | int | None:
    """'' -> None, 'cpu' -> 'cpu', '<i>' -> i; anything else is refused."""
    spec = spec.strip()
    if not spec:
        return None
    if spec == "cpu":
        return spec
    if spec.isdigit():
        return int(spec)
    raise ValueError(
        f"--policy_device must be empty (with the train step), 'cpu' or a local device index, "
        f"got {spec!r}"
    )


def resolve_policy_device(spec: str) -> jax.Device | None:
    parsed = parse_policy_device(spec)
    if parsed is None:
        return None
    if parsed == "cpu":
        return jax.devices("cpu")[0]
    local = jax.local_devices()
    if parsed >= len(local):
        raise ValueError(
            f"--policy_device={parsed}: this process has {len(local)} local device(s) "
            f"({local[0].platform}), indices 0..{len(local) - 1}"
        )
    return local[parsed]


class PolicyPublisher:
    """Makes the state the policy acts with from the train state (module docstring)."""

    def __init__(self, device: jax.Device | None):
        """device: ``resolve_policy_device(--policy_device)``; None acts beside the train step."""
        self.device = device
        self._copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))

    def publish(self, train_state: Any, copy: bool = True) -> Any:
        """The acting view of ``train_state``: the state itself when no copy is asked for and no
        policy device is set; otherwise fresh buffers the next train step cannot donate."""
        if self.device is None and not copy:
            return train_state
        view = train_state.replace(opt_state=(), extra_opt_state=())
        if self.device is None:
            return self._copy(view)
        return jax.device_put(view, self.device, may_alias=False)

    def place(self, tree: Any) -> Any:
        """The policy's carry on the policy device (unchanged without one)."""
        if self.device is None:
            return tree
        return jax.device_put(tree, self.device)
