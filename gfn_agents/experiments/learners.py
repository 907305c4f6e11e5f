"""What a run trains: a gfn_agents agent or an SB3 baseline, behind one small surface.

A :class:`Learner` trains up to a number of trajectories in all, calling ``on_iteration()`` after
every iteration (a training iteration of an agent; a step of the vector env for SB3), evaluates its
sampler and writes its weights:

* **Agents** (any :data:`gfn_agents.PRESETS` name): ``make_agent(name, env_id, env_kwargs=…,
  seed=…, **kwargs)``; checkpoints are the agents' own (``agent.save``), written at evaluations,
  and an interrupted run resumes from the last one with ``learn(…, reset_num_timesteps=False)``.
  Agents with a replay buffer (SoftDQN, MunchausenDQN) do not keep it in their checkpoint, so an
  interrupted run of theirs restarts from scratch instead of resuming inexactly.
* **SB3 baselines**: ``PPO-soft`` (MaskablePPO on ``make_sb3_env(reward="soft")``, the
  policy-dependent rewards minus log π, fed by ``SoftPolicyCallback``), ``PPO-plain``
  (MaskablePPO on the bare env, log R(x) at exit) and ``A2C-soft`` (``masked_a2c`` on the soft
  rewards), 16 envs, with :data:`SB3_DEFAULTS`; config kwargs go to MaskablePPO, plus ``n_envs``.
  Their episodes straddle rollouts, so the env's in-flight episodes would be part of an exact
  resume: an interrupted SB3 run restarts from scratch. Their final weights are
  ``model.get_parameters()`` written by ``torch.save`` (``model.pt``, loadable with
  ``torch.load(weights_only=True)`` and ``model.set_parameters``).

Evaluation is exact (:func:`gfn_agents.evaluate_sampler`) on enumerable tasks; otherwise an agent
draws ``samples`` terminal objects (with its generator's state restored afterwards, so evaluating
never changes training) and their statistics are recorded (:func:`sampled_statistics`: top-k
reward, modes, diversity and oracle calls on RNABinding).
"""

from __future__ import annotations

import inspect
import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from gfn_agents import PRESETS, GFlowNetAlgorithm, evaluate_sampler, make_agent
from gfn_agents.experiments.config import ConfigError, Experiment
from gfn_agents.experiments.files import write_bytes, write_json
from gfn_envs.exact import ForwardPolicy
from gfn_envs.metrics.sequences import discovery_metrics
from gfn_envs.task import Task
from gfn_envs.tasks.rna import RNABinding
from gfn_envs.unwrap import task_of

SB3_BASELINES: dict[str, tuple[str, str]] = {
    "PPO-soft": ("ppo", "soft"),
    "PPO-plain": ("ppo", "log_reward"),
    "A2C-soft": ("a2c", "soft"),
}
"""SB3 baseline names: (algorithm, reward of ``make_sb3_env``)."""

SB3_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 64, "batch_size": 256, "learning_rate": 3e-4},
    "a2c": {"n_steps": 5, "gamma": 1.0},
}
"""Settings of the SB3 baselines before the config's kwargs (PPO adds ``GFN_PPO_KWARGS``)."""

SB3_N_ENVS = 16
RUNNER_KEYS = ("policy", "env", "env_kwargs", "seed", "device", "verbose", "tensorboard_log")
"""Constructor arguments the runner sets itself; a config may not."""

CHECKPOINT = "checkpoint.zip"
WEIGHTS = (CHECKPOINT, "model.pt", "model.json")
"""The files a learner's ``save`` writes into a run folder."""


def agent_names() -> list[str]:
    """Every name an ``[[agents]]`` entry may use."""
    return sorted(PRESETS) + list(SB3_BASELINES)


def _constructor_keywords(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            for name, param in inspect.signature(klass.__init__).parameters.items():
                if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                    names.add(name)
    return names - {"self"}


def accepted_kwargs(name: str) -> list[str]:
    """The kwargs a config may give agent ``name``."""
    if name in SB3_BASELINES:
        from sb3_contrib import MaskablePPO

        names = _constructor_keywords(MaskablePPO) | {"n_envs"}
        if SB3_BASELINES[name][0] == "a2c":
            names -= {"n_epochs", "batch_size", "normalize_advantage"}
        names -= {"_init_setup_model"}
    else:
        names = _constructor_keywords(PRESETS[name][0])
    return sorted(names - set(RUNNER_KEYS))


class _IterationHook(BaseCallback):
    """Calls ``on_iteration()`` after every training iteration; stops when it returns False."""

    def __init__(self, on_iteration: Callable[[], bool]) -> None:
        super().__init__()
        self.on_iteration = on_iteration

    def _on_step(self) -> bool:
        return self.on_iteration()


class Learner(ABC):
    """One run's model: train in trajectories, evaluate, write weights."""

    task: Task

    @property
    def resumable(self) -> bool:
        """Whether an interrupted run continues from its checkpoint (else it restarts)."""
        return True

    @property
    @abstractmethod
    def trajectories(self) -> int:
        """Complete training trajectories so far."""

    @property
    @abstractmethod
    def timesteps(self) -> int:
        """Training transitions so far (exit moves included)."""

    @property
    @abstractmethod
    def forward_policy(self) -> ForwardPolicy:
        """The sampler as ``(obs, mask) -> log-probs`` (for the exact DP)."""

    @property
    def log_z(self) -> float | None:
        """The learned log Z, or None for learners without one."""
        return None

    @abstractmethod
    def learn(self, total: int, on_iteration: Callable[[], bool]) -> None:
        """Train until ``total`` trajectories in all; stop early when ``on_iteration`` is False."""

    @abstractmethod
    def evaluate(self, evaluation: dict[str, int]) -> dict[str, float]:
        """The sampler's metrics now (exact where the task is enumerable)."""

    @abstractmethod
    def save(self, directory: Path) -> str:
        """Write the weights into ``directory`` atomically; return the file name."""


class AgentLearner(Learner):
    """A gfn_agents agent (see the module docstring)."""

    def __init__(self, agent: GFlowNetAlgorithm) -> None:
        self.agent, self.task = agent, agent.task

    @property
    def resumable(self) -> bool:
        return not hasattr(self.agent, "save_replay_buffer")

    @classmethod
    def build(
        cls, experiment: Experiment, label: str, seed: int | None, device: str = "cpu"
    ) -> AgentLearner:
        spec = experiment.agent(label)
        agent = make_agent(
            spec.name,
            experiment.env_id,
            env_kwargs=experiment.env_kwargs,
            seed=seed,
            device=device,
            **spec.kwargs,
        )
        return cls(agent)

    @classmethod
    def load(cls, directory: Path, device: str = "cpu") -> AgentLearner:
        return cls(GFlowNetAlgorithm.load(directory / CHECKPOINT, device=device))

    @property
    def trajectories(self) -> int:
        return int(self.agent.num_trajectories)

    @property
    def timesteps(self) -> int:
        return int(self.agent.num_timesteps)

    @property
    def forward_policy(self) -> ForwardPolicy:
        return self.agent.forward_log_probs

    @property
    def log_z(self) -> float | None:
        return getattr(self.agent, "log_z", None)

    def learn(self, total: int, on_iteration: Callable[[], bool]) -> None:
        remaining = total - self.trajectories
        if remaining > 0:
            self.agent.learn(
                total_trajectories=remaining,
                callback=_IterationHook(on_iteration),
                reset_num_timesteps=False,
            )

    def evaluate(self, evaluation: dict[str, int]) -> dict[str, float]:
        if self.task.enumerable:
            return evaluate_sampler(self.agent)
        state = self.agent.generator.get_state()
        try:
            objects = self.agent.sample(evaluation["samples"])
        finally:
            self.agent.generator.set_state(state)
        return sampled_statistics(self.task, objects, evaluation["top_k"])

    def save(self, directory: Path) -> str:
        self.agent.save(directory / CHECKPOINT)
        return CHECKPOINT


def sampled_statistics(task: Task, objects: torch.Tensor, top_k: int) -> dict[str, float]:
    """Statistics of sampled terminal objects: on RNABinding its discovery metrics
    (:func:`gfn_envs.metrics.sequences.discovery_metrics`), on other tasks ``mean_log_reward``,
    ``max_log_reward`` and ``unique`` (distinct objects)."""
    if isinstance(task, RNABinding):
        return discovery_metrics(task, objects, k=top_k)
    log_rewards = task.log_reward(objects).double()
    return {
        "mean_log_reward": float(log_rewards.mean()),
        "max_log_reward": float(log_rewards.max()),
        "unique": float(len(torch.unique(objects.flatten(1), dim=0))),
    }


class _TrajectoryCounter(BaseCallback):
    """Counts finished SB3 episodes, calls the run's hook, stops at the budget."""

    def __init__(self, learner: SB3Learner, total: int, on_iteration: Callable[[], bool]) -> None:
        super().__init__()
        self.learner, self.total, self.on_iteration = learner, total, on_iteration

    def _on_step(self) -> bool:
        self.learner.num_trajectories += int(np.sum(self.locals["dones"]))
        keep_going = self.on_iteration()
        return keep_going and self.learner.num_trajectories < self.total


class SB3Learner(Learner):
    """An SB3 baseline (see the module docstring); trained from scratch in one ``learn``."""

    def __init__(
        self, experiment: Experiment, label: str, seed: int | None, device: str = "cpu"
    ) -> None:
        from gfn_agents.sb3 import GFN_PPO_KWARGS, make_sb3_env, masked_a2c

        spec = experiment.agent(label)
        algorithm, self.reward = SB3_BASELINES[spec.name]
        kwargs = dict(spec.kwargs)
        n_envs = kwargs.pop("n_envs", SB3_N_ENVS)
        env = make_sb3_env(
            experiment.env_id, n_envs=n_envs, reward=self.reward, **experiment.env_kwargs
        )
        settings = {**SB3_DEFAULTS[algorithm], **kwargs, "seed": seed, "device": device}
        if algorithm == "ppo":
            from sb3_contrib import MaskablePPO

            self.model = MaskablePPO("MlpPolicy", env, **{**GFN_PPO_KWARGS, **settings})
        else:
            self.model = masked_a2c(env, **settings)
        self.task = task_of(gym.make(experiment.env_id, **experiment.env_kwargs))
        self.settings = {"algorithm": algorithm, "reward": self.reward, "n_envs": n_envs}
        self.num_trajectories = 0

    @property
    def resumable(self) -> bool:
        return False

    @property
    def trajectories(self) -> int:
        return self.num_trajectories

    @property
    def timesteps(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def forward_policy(self) -> ForwardPolicy:
        from gfn_agents.sb3 import sb3_forward_policy

        return sb3_forward_policy(self.model)

    def learn(self, total: int, on_iteration: Callable[[], bool]) -> None:
        from gfn_agents.sb3 import SoftPolicyCallback

        callbacks: list[BaseCallback] = [_TrajectoryCounter(self, total, on_iteration)]
        if self.reward == "soft":
            callbacks.insert(0, SoftPolicyCallback())
        self.model.learn(total_timesteps=10**12, callback=callbacks)

    def evaluate(self, evaluation: dict[str, int]) -> dict[str, float]:
        return evaluate_sampler(self.forward_policy, self.task)

    def save(self, directory: Path) -> str:
        buffer = io.BytesIO()
        torch.save(self.model.get_parameters(), buffer)
        write_bytes(directory / "model.pt", buffer.getvalue())
        meta = {
            "class": type(self.model).__name__,
            **self.settings,
            "num_timesteps": self.timesteps,
            "trajectories": self.trajectories,
        }
        write_json(directory / "model.json", meta)
        return "model.pt"


def build_learner(
    experiment: Experiment, label: str, seed: int | None, device: str = "cpu"
) -> Learner:
    """A fresh learner for agent ``label`` of ``experiment``."""
    if experiment.agent(label).name in SB3_BASELINES:
        return SB3Learner(experiment, label, seed, device)
    return AgentLearner.build(experiment, label, seed, device)


def check_experiment(experiment: Experiment) -> bool:
    """Check the env and every agent of ``experiment`` by building them once (without training).

    Returns whether the task is enumerable (evaluated exactly). Raises a :class:`ConfigError`
    naming the file, the key and what is allowed.
    """
    from gymnasium.envs.registration import registry

    path = experiment.path
    if experiment.env_id not in registry:
        known = sorted(k for k in registry if k.startswith("gfn_envs/"))
        raise ConfigError(path, "env.id", f"unknown env {experiment.env_id!r}; registered: {known}")
    try:
        task = task_of(gym.make(experiment.env_id, **experiment.env_kwargs))
    except (TypeError, ValueError, ImportError, gym.error.Error) as exc:
        raise ConfigError(path, "env.kwargs", f"{experiment.env_id} rejects them: {exc}") from None
    exact = bool(task.enumerable)
    names = agent_names()
    for i, spec in enumerate(experiment.agents):
        key = f"agents[{i}]"
        if spec.name not in names:
            raise ConfigError(path, f"{key}.name", f"unknown agent {spec.name!r}; allowed: {names}")
        if spec.name in SB3_BASELINES and not exact:
            raise ConfigError(
                path,
                f"{key}.name",
                f"{spec.name} is evaluated exactly and needs an enumerable task; "
                f"{experiment.env_id} is not",
            )
        allowed = accepted_kwargs(spec.name)
        for kwarg in spec.kwargs:
            if kwarg in RUNNER_KEYS:
                raise ConfigError(
                    path, f"{key}.kwargs.{kwarg}", "is set by the runner (seeds come from budget)"
                )
            if kwarg not in allowed:
                raise ConfigError(
                    path, f"{key}.kwargs.{kwarg}", f"not a {spec.name} kwarg; allowed: {allowed}"
                )
        try:
            build_learner(experiment, spec.label, seed=None)
        except (TypeError, ValueError) as exc:
            raise ConfigError(path, f"{key}.kwargs", f"{spec.name} rejects them: {exc}") from None
    return exact
