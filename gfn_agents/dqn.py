"""Masked soft DQN and Munchausen DQN as GFlowNet samplers (Tiapkin et al. 2024, "Generative Flow
Networks as Entropy-Regularized RL").

The forward MDP has reward log P_B(s|s') on every move and log R̂(x) on the exit (the rewards of
:class:`gfn_envs.wrappers.ForwardRewardModel` with log Z = 0: minus the forward cost of
:mod:`gfn_envs.scoring` without its log P_F term), γ = 1 and entropy coefficient 1.
Its soft-optimal policy π*(a|s) = exp(Q*(s, a) − V*(s)) samples x ∝ R(x), and V*(s0) = log Z*.

**Soft DQN.** Q_θ(s, ·) over the legal actions; π_θ = softmax(Q_θ) over the legal actions. Target:

    y = r + (1 − done) · logsumexp_{a' legal at s'} Q_θ̄(s', a')

with a Polyak-averaged target network θ̄, and a Huber loss between Q_θ(s, a) and y.

**Munchausen DQN** (Vieillard et al. 2020) with coefficient α and temperature τ:

    y = r + α·τ·clip(log π_θ̄(a|s), l0, 0) + (1 − done) · τ·logsumexp(Q_θ̄(s', ·)/τ),
    π_θ̄ = softmax(Q_θ̄/τ).

Without the clip its fixed point is the soft-optimal policy of entropy coefficient (1 − α)·τ, so
τ = 1/(1 − α) (the default) keeps the GFlowNet fixed point x ∝ R(x); V(s0) = τ·logsumexp(Q(s0)/τ)
is still log Z*.

Exploration: trajectories are sampled from π_θ mixed with ε of the uniform legal policy. The
transitions go to SB3's ``ReplayBuffer`` (subclassed to keep the raw states and the next state's
action mask and to add a batch at a time); rewards are stored, and :meth:`SoftDQN.refresh_rewards`
recomputes every stored reward when the backward policy is swapped (the rewards depend on it).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.utils import polyak_update
from torch import Tensor, nn

from gfn_agents import distributed
from gfn_agents.base import GFlowNetAlgorithm
from gfn_agents.checkpoint import load_arrays, save_arrays
from gfn_agents.policies import check_net_arch, mlp
from gfn_agents.rollout import sample_trajectories
from gfn_agents.validation import check_positive, check_unit_interval
from gfn_envs.scoring import gather, masked_log_softmax
from gfn_envs.wrappers import CheckedPolicy, ForwardRewardModel, PolicyLike

BUFFER_ARRAYS = (
    "observations",
    "next_observations",
    "actions",
    "rewards",
    "dones",
    "timeouts",
    "states",
    "masks",
    "next_masks",
)
"""The arrays of a :class:`MaskableReplayBuffer` that :meth:`SoftDQN.save_replay_buffer` writes."""


class MaskedSamples(NamedTuple):
    """A minibatch of transitions (torch tensors on the agent's device)."""

    observations: Tensor
    actions: Tensor
    next_observations: Tensor
    dones: Tensor
    rewards: Tensor
    masks: Tensor
    next_masks: Tensor


class MaskableReplayBuffer(ReplayBuffer):
    """SB3's ``ReplayBuffer`` (one env) plus raw states and next-state masks, filled by batches."""

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Box,
        n_actions: int,
        state_shape: tuple[int, ...],
        device: torch.device,
    ) -> None:
        super().__init__(
            buffer_size,
            observation_space,
            spaces.Discrete(n_actions),
            device,
            n_envs=1,
            handle_timeout_termination=False,
        )
        self.states = np.zeros((self.buffer_size, 1, *state_shape), dtype=np.int64)
        self.masks = np.zeros((self.buffer_size, 1, n_actions), dtype=bool)
        self.next_masks = np.zeros((self.buffer_size, 1, n_actions), dtype=bool)

    def size(self) -> int:
        return self.buffer_size if self.full else self.pos

    def extend(
        self,
        states: Tensor,
        obs: Tensor,
        masks: Tensor,
        actions: Tensor,
        rewards: Tensor,
        next_obs: Tensor,
        dones: Tensor,
        next_masks: Tensor,
    ) -> None:
        """Append a batch of N transitions (oldest entries are overwritten when full; of a batch
        larger than the buffer only the last ``buffer_size`` transitions are kept)."""
        keep = slice(max(0, len(actions) - self.buffer_size), None)
        columns = {
            "states": states[keep],
            "observations": obs[keep],
            "masks": masks[keep],
            "actions": actions[keep].unsqueeze(1),
            "rewards": rewards[keep],
            "next_observations": next_obs[keep],
            "dones": dones[keep].float(),
            "next_masks": next_masks[keep],
        }
        n = len(columns["actions"])
        rows = (self.pos + np.arange(n)) % self.buffer_size
        for name, values in columns.items():
            array = getattr(self, name)
            array[rows, 0] = values.detach().cpu().numpy().astype(array.dtype, copy=False)
        self.full = self.full or self.pos + n >= self.buffer_size
        self.pos = int((self.pos + n) % self.buffer_size)

    def sample_masked(self, batch_size: int, generator: torch.Generator) -> MaskedSamples:
        """A uniform minibatch, drawn with ``generator`` (so runs are reproducible)."""
        index = torch.randint(self.size(), (batch_size,), generator=generator).numpy()
        base = self._get_samples(index)
        return MaskedSamples(
            base.observations,
            base.actions.squeeze(1).long(),
            base.next_observations,
            base.dones.squeeze(1),
            base.rewards.squeeze(1),
            self.to_torch(self.masks[index, 0]).bool(),
            self.to_torch(self.next_masks[index, 0]).bool(),
        )


class QNetworks(nn.Module):
    """Q_θ and its target Q_θ̄; ``forward_outputs`` gives the policy logits Q_θ/τ."""

    def __init__(self, obs_dim: int, n_actions: int, net_arch: Iterable[int], tau: float) -> None:
        super().__init__()
        self.q = mlp(obs_dim, n_actions, check_net_arch(net_arch, "net_arch"))
        self.q_target = mlp(obs_dim, n_actions, check_net_arch(net_arch, "net_arch"))
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.tau = tau

    def forward_outputs(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits of π_θ = softmax(Q_θ/τ) (a :data:`gfn_envs.scoring.Policy`)."""
        return self.q(obs) / self.tau


class SoftDQN(GFlowNetAlgorithm):
    """Masked soft DQN GFlowNet sampler (see the module docstring).

    Args:
        policy: ``"MlpPolicy"``.
        env: registered id, Gymnasium env or vector env of gfn_envs.
        batch_size: trajectories sampled per iteration.
        learning_rate: Adam step size of Q_θ.
        net_arch: hidden widths of Q (default 2 × 256).
        buffer_size: replay capacity in transitions (on N ranks, N buffers of buffer_size / N).
        learning_starts: transitions collected (by all ranks) before the first gradient step.
        train_batch_size: transitions per gradient step (train_batch_size / N from each rank).
        gradient_steps: gradient steps per iteration.
        target_update_tau: Polyak coefficient of the target network per gradient step.
        epsilon: weight of the uniform legal policy in the exploration mixture.
        backward_policy: P_B of the rewards, ``"uniform"`` or a callable (see
            :mod:`gfn_envs.wrappers`).
        log_reward_clip, env_kwargs, seed, device, verbose, tensorboard_log, **kwargs: see
            :class:`~gfn_agents.base.GFlowNetAlgorithm`.
    """

    def __init__(
        self,
        policy: str,
        env: Any,
        batch_size: int = 16,
        learning_rate: float = 1e-3,
        net_arch: Iterable[int] = (256, 256),
        buffer_size: int = 100_000,
        learning_starts: int = 1_000,
        train_batch_size: int = 256,
        gradient_steps: int = 4,
        target_update_tau: float = 0.05,
        epsilon: float = 0.05,
        backward_policy: PolicyLike = "uniform",
        log_reward_clip: float | None = -12.0,
        env_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        verbose: int = 0,
        tensorboard_log: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_positive("buffer_size", buffer_size, integer=True)
        check_positive("train_batch_size", train_batch_size, integer=True)
        check_positive("gradient_steps", gradient_steps, integer=True)
        if (
            isinstance(learning_starts, bool)
            or not isinstance(learning_starts, int)
            or learning_starts < 0
        ):
            raise ValueError(f"learning_starts must be an integer >= 0, got {learning_starts!r}")
        check_unit_interval("target_update_tau", target_update_tau)
        check_unit_interval("epsilon", epsilon)
        if backward_policy != "uniform" and not callable(backward_policy):
            raise ValueError(
                f"backward_policy must be 'uniform' or a callable, got {backward_policy!r}"
            )
        self.buffer_size, self.learning_starts = buffer_size, learning_starts
        self.train_batch_size, self.gradient_steps = train_batch_size, gradient_steps
        self.target_update_tau, self.epsilon = float(target_update_tau), float(epsilon)
        self.backward_policy = backward_policy
        super().__init__(
            policy,
            env,
            batch_size=batch_size,
            learning_rate=learning_rate,
            net_arch=net_arch,
            log_reward_clip=log_reward_clip,
            env_kwargs=env_kwargs,
            seed=seed,
            device=device,
            verbose=verbose,
            tensorboard_log=tensorboard_log,
            **kwargs,
        )

    # ------------------------------------------------------------------ setup
    @property
    def temperature(self) -> float:
        """τ of π = softmax(Q/τ); 1 for soft DQN."""
        return 1.0

    def _setup_model(self) -> None:
        task = self.task
        self.networks = QNetworks(task.obs_dim, task.n_actions, self.net_arch, self.temperature).to(
            self.device
        )
        self.optimizers = {
            "q": torch.optim.Adam(self.networks.q.parameters(), lr=self.learning_rate)
        }
        self.rewards = ForwardRewardModel(
            task, self.backward_policy, log_z=0.0, log_reward_clip=self.log_reward_clip
        )
        # In a data-parallel run each rank keeps its own share of the replay memory and samples
        # its share of every gradient step's minibatch (docs/distributed.md).
        self.local_train_batch_size = distributed.local_share(
            self.train_batch_size, self.parallel, "train_batch_size"
        )
        self.replay_buffer = MaskableReplayBuffer(
            distributed.local_share(self.buffer_size, self.parallel, "buffer_size"),
            self.forward_env.single_observation_space,
            task.n_actions,
            tuple(task.state_shape),
            self.device,
        )

    def _hyperparameters(self) -> dict[str, Any]:
        out = super()._hyperparameters()
        for name in ("lr_z",):
            out.pop(name, None)
        out |= {
            "buffer_size": self.buffer_size,
            "learning_starts": self.learning_starts,
            "train_batch_size": self.train_batch_size,
            "gradient_steps": self.gradient_steps,
            "target_update_tau": self.target_update_tau,
            "epsilon": self.epsilon,
        }
        if isinstance(self.backward_policy, str):
            out["backward_policy"] = self.backward_policy
        return out

    @property
    def log_z(self) -> float:
        """V_θ(s0) = τ·logsumexp(Q_θ(s0, ·)/τ) over the legal actions: the estimate of log Z."""
        s0 = self.task.s0(1)
        with torch.no_grad():
            logits = self.networks.forward_outputs(self.task.encode(s0).to(self.device))
            logits = logits.masked_fill(~self.task.forward_mask(s0).to(self.device), -torch.inf)
            return float(self.temperature * torch.logsumexp(logits, dim=1)[0])

    def save_replay_buffer(self, path: str | os.PathLike[str]) -> None:
        """Write the replay buffer as an ``.npz`` of plain arrays (``.npz`` appended when missing),
        atomically; kept out of :meth:`save`, as in SB3's off-policy agents."""
        buffer = self.replay_buffer
        arrays = {name: getattr(buffer, name) for name in BUFFER_ARRAYS}
        arrays |= {"pos": np.asarray(buffer.pos), "full": np.asarray(buffer.full)}
        save_arrays(path, type(buffer).__name__, arrays)

    def load_replay_buffer(self, path: str | os.PathLike[str]) -> None:
        """Restore a buffer from :meth:`save_replay_buffer` (read with ``allow_pickle=False``);
        with it, ``learn(..., reset_num_timesteps=False)`` after :meth:`load` continues exactly.
        Every array must have this agent's buffer shape and dtype, else a ValueError."""
        buffer = self.replay_buffer
        kind = type(buffer).__name__
        arrays = load_arrays(path, kind, {*BUFFER_ARRAYS, "pos", "full"})
        for name in BUFFER_ARRAYS:
            mine, theirs = getattr(buffer, name), arrays[name]
            if theirs.shape != mine.shape or theirs.dtype != mine.dtype:
                raise ValueError(
                    f"{path} holds {name} of shape {theirs.shape} ({theirs.dtype}); this agent's "
                    f"buffer needs {mine.shape} ({mine.dtype}): another buffer_size or task"
                )
        pos, full = arrays["pos"], arrays["full"]
        if pos.shape != () or pos.dtype.kind not in "iu" or not 0 <= int(pos) < buffer.buffer_size:
            raise ValueError(f"{path} is damaged: pos {pos.tolist()!r} is not a buffer position")
        if full.shape != () or full.dtype != np.bool_:
            raise ValueError(f"{path} is damaged: full must be a boolean, got {full.tolist()!r}")
        for name in BUFFER_ARRAYS:
            getattr(buffer, name)[...] = arrays[name]
        buffer.pos, buffer.full = int(pos), bool(full)

    def set_backward_policy(self, policy: PolicyLike) -> None:
        """Swap P_B and recompute every stored reward with it."""
        self.rewards.backward_policy = CheckedPolicy(policy, "backward_policy")
        self.backward_policy = policy
        self.refresh_rewards()

    def refresh_rewards(self) -> None:
        """Recompute the stored rewards with the current reward model (the P_B may have changed)."""
        size = self.replay_buffer.size()
        if size == 0:
            return
        states = torch.as_tensor(self.replay_buffer.states[:size, 0], device=self.task.device)
        actions = torch.as_tensor(self.replay_buffer.actions[:size, 0, 0], device=self.task.device)
        rewards = self.rewards.rewards(states, actions.long())
        self.replay_buffer.rewards[:size, 0] = rewards.cpu().numpy()

    # ------------------------------------------------------------------ training
    def _collect(self) -> int:
        traj = sample_trajectories(
            self.forward_env,
            self.networks.forward_outputs,
            self.generator,
            grad=False,
            epsilon=self.epsilon,
        )
        rewards = self.rewards.rewards(traj.states, traj.actions)
        nxt = traj.next_index.clamp(min=0)
        done = traj.is_last
        # after the exit there is no next state: an all-legal mask keeps logsumexp finite
        next_masks = torch.where(done.unsqueeze(1), True, traj.masks[nxt])
        self.replay_buffer.extend(
            traj.states,
            traj.obs,
            traj.masks,
            traj.actions,
            rewards,
            traj.obs[nxt],
            done,
            next_masks,
        )
        return len(traj.actions)

    def _bootstrap(self, batch: MaskedSamples) -> Tensor:
        """τ·logsumexp(Q_θ̄(s', ·)/τ) over the legal actions of s' (0 after the exit)."""
        tau = self.temperature
        q_next = self.networks.q_target(batch.next_observations) / tau
        v_next = tau * torch.logsumexp(q_next.masked_fill(~batch.next_masks, -torch.inf), dim=1)
        return torch.where(batch.dones > 0, torch.zeros_like(v_next), v_next)

    def _target(self, batch: MaskedSamples) -> Tensor:
        return batch.rewards + self._bootstrap(batch)

    def train_step(self) -> dict[str, float]:
        transitions = self._collect()
        stats: dict[str, float] = {"transitions": float(transitions)}
        stored = distributed.global_count(self.replay_buffer.size(), self.device)
        if stored < max(self.learning_starts, 1):
            return stats
        losses = []
        for _ in range(self.gradient_steps):
            batch = self.replay_buffer.sample_masked(self.local_train_batch_size, self.generator)
            with torch.no_grad():
                target = self._target(batch)
            q = self.networks.q(batch.observations).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
            loss = nn.functional.smooth_l1_loss(q, target)
            self.optimizers["q"].zero_grad()
            loss.backward()
            self.optimizers["q"].step()
            polyak_update(
                self.networks.q.parameters(),
                self.networks.q_target.parameters(),
                self.target_update_tau,
            )
            losses.append(float(loss.detach()))
        stats |= {"loss": float(np.mean(losses)), "log_z": self.log_z}
        return stats


class MunchausenDQN(SoftDQN):
    """Masked Munchausen DQN GFlowNet sampler (see the module docstring).

    Args:
        munchausen_alpha: α in [0, 1); τ = 1/(1 − α) keeps the GFlowNet fixed point.
        log_policy_clip: l0 < 0, the lower clip of log π_θ̄(a|s) in the bonus.
        **kwargs: as :class:`SoftDQN`.
    """

    def __init__(
        self,
        policy: str,
        env: Any,
        munchausen_alpha: float = 0.15,
        log_policy_clip: float = -20.0,
        **kwargs: Any,
    ) -> None:
        if (
            isinstance(munchausen_alpha, bool)
            or not isinstance(munchausen_alpha, (int, float))
            or not (0.0 <= munchausen_alpha < 1.0)
        ):
            raise ValueError(f"munchausen_alpha must lie in [0, 1), got {munchausen_alpha!r}")
        if not isinstance(log_policy_clip, (int, float)) or not (
            math.isfinite(log_policy_clip) and log_policy_clip < 0
        ):
            raise ValueError(
                f"log_policy_clip must be a finite negative number, got {log_policy_clip!r}"
            )
        self.munchausen_alpha, self.log_policy_clip = (
            float(munchausen_alpha),
            float(log_policy_clip),
        )
        super().__init__(policy, env, **kwargs)

    @property
    def temperature(self) -> float:
        """τ = 1/(1 − α)."""
        return 1.0 / (1.0 - self.munchausen_alpha)

    def _hyperparameters(self) -> dict[str, Any]:
        return super()._hyperparameters() | {
            "munchausen_alpha": self.munchausen_alpha,
            "log_policy_clip": self.log_policy_clip,
        }

    def _target(self, batch: MaskedSamples) -> Tensor:
        tau = self.temperature
        q = self.networks.q_target(batch.observations) / tau
        log_pi = gather(masked_log_softmax(q, batch.masks), batch.actions)
        bonus = self.munchausen_alpha * tau * log_pi.clamp(self.log_policy_clip, 0.0)
        return batch.rewards + bonus + self._bootstrap(batch)
