"""The reward-model interface: all the trainer knows of a reward model (GenReward, VLM-RM, ...).

A reward model sits between the env batch and replay. Each env step it receives the batch of
observations and returns them with the entries it adds, among them ``reward``, the reward the
agent learns from; it says beforehand which frames it needs rendered, and it keeps whatever state
it has (running statistics, frame windows) checkpointable so a run resumes exactly. A model whose
reward must change while the agent trains (GenReward's FB term, F and B being trained in the same
step) adds it through an ``dreamer.agent.ExtraLoss`` built next to it by its plug-in
(``plugins.py``), not through this interface.

To add a reward model: a class with these members, a builder in ``plugins.py`` that makes it from
flags, and, for the reward-quality benchmark, a function that turns it into
``quality.RewardTerm``s. Nothing in the trainer changes.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

ReplaySpec = dict[str, tuple[tuple[int, ...], Any]]  # key -> (per-step shape, dtype)


class RewardModel(Protocol):
    """What a reward model offers the training loop (``trainer.Trainer``)."""

    @property
    def needs_frames(self) -> bool:
        """Whether the training envs must render policy frames (obs['image']) for it."""

    @property
    def extra_size(self) -> int | None:
        """Side of the extra frame (obs['extra_image']) it reads, or None when it needs none."""

    @property
    def num_goals(self) -> int:
        """Goals of a bank (one per placement); 1 otherwise."""

    @property
    def goal_index(self) -> np.ndarray:
        """[N] int: which goal of the bank each env's current episode uses."""

    @property
    def goal_frames(self) -> np.ndarray | None:
        """[T, S, S, 3] uint8 frames shown beside evaluation videos, or None."""

    @property
    def placements(self) -> tuple[tuple[float, ...], ...]:
        """Object/goal placements the goal shows, one per goal (for --placement=goal)."""

    def replay_entries(self, obs: dict[str, np.ndarray]) -> ReplaySpec:
        """The keys ``process`` adds that go into replay, with their per-step shape and dtype
        (``obs``: the first processed batch)."""

    def render_mask(self, next_is_first: np.ndarray | None = None) -> np.ndarray:
        """[N] bool: which envs must render the extra frame on the coming step."""

    def process(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The env batch with this model's entries added, 'reward' among them."""

    def add_agent_reward(self, reward: np.ndarray) -> None:
        """The reward [N] the agent's own extra loss gives this step (for the logged shares of
        each term; no effect on training)."""

    def metrics(self) -> dict[str, float]:
        """Logged values since the last call, named 'rewards/...'."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that make the model resume exactly."""

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restores ``state_dict``'s arrays."""
