"""The algorithm surface every agent shares, in the manner of Stable-Baselines3's ``BaseAlgorithm``.

``Agent(policy, env, **hyperparameters)``; ``learn(total_timesteps, callback=…, log_interval=…,
progress_bar=…, reset_num_timesteps=…)`` or ``learn(total_trajectories=…, …)``; ``sample(n)`` for
terminal objects; ``predict(obs, action_masks=…)``; ``save(path)`` and ``Agent.load(path, env=None)``.

* ``env`` is a registered id (with ``env_kwargs``; ``HyperGrid-v0`` and ``gfn_envs/HyperGrid-v0``
  both work), a Gymnasium env or a vector env of gfn_envs; the agent samples through its own native
  vector env of ``batch_size`` sub-envs on the same task.
* Callbacks are Stable-Baselines3 ``BaseCallback`` objects; ``on_step`` is called once per training
  iteration. Logging uses SB3's logger (stdout, csv, tensorboard).
* ``num_timesteps`` counts transitions (actions, exit included) and ``num_trajectories`` complete
  trajectories, over all ``learn`` calls unless ``reset_num_timesteps``.
* Checkpoints (:mod:`gfn_agents.checkpoint`): JSON metadata (hyperparameters, env spec with a task
  fingerprint, counters) and weights-only tensors (networks, optimizers, RNG states), written
  atomically; loading never unpickles.
* Under torchrun the agent is one rank of a data-parallel run (:mod:`gfn_agents.distributed`):
  every update is the single-process update on all ranks' trajectories, and rank 0 alone logs,
  runs the callbacks and writes checkpoints.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger, configure
from torch import Tensor, nn
from tqdm.auto import tqdm

from gfn_agents import distributed
from gfn_agents.checkpoint import read_checkpoint, restore_modules, write_checkpoint
from gfn_agents.envspec import check_env, env_identity, task_fingerprint
from gfn_agents.registry import AGENT_CLASSES, agent_class
from gfn_agents.rollout import sample_trajectories
from gfn_agents.validation import check_device, check_positive
from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.scoring import clip_log_rewards, policy_log_probs
from gfn_envs.task import Task
from gfn_envs.unwrap import task_of

POLICIES = ("MlpPolicy",)


def _keyword_parameters(cls: type) -> list[str]:
    """The keyword arguments the constructors along ``cls``'s MRO accept (not policy and env)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            for name, param in inspect.signature(klass.__init__).parameters.items():
                if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                    names.add(name)
    return sorted(names - {"self", "policy", "env"})


class GFlowNetAlgorithm(ABC):
    """Base class of all agents. Subclasses implement :meth:`_setup_model` and :meth:`train_step`.

    Args:
        policy: ``"MlpPolicy"`` (masked categorical MLPs).
        env: registered id, Gymnasium env or vector env of gfn_envs (or a task).
        batch_size: trajectories per training iteration (in all: under torchrun each of N ranks
            samples batch_size / N; see :mod:`gfn_agents.distributed`).
        learning_rate: Adam step size of the policy networks.
        lr_z: Adam step size of log Z.
        net_arch: hidden widths of P_F and P_B (default 4 × 256 as in the paper).
        log_reward_clip: lower clip of log R in the losses (the paper's −12), or None.
        env_kwargs: kwargs of a registered id.
        seed: seeds network initialisation and sampling (rank r samples with seed + r); the same
            seed gives the same run.
        device: ``"cpu"`` or ``"cuda"`` (a ValueError when CUDA is unavailable; ``cuda:LOCAL_RANK``
            under torchrun); an env given by its id is built there too.
        verbose: 0 silent, 1 logs to stdout.
        tensorboard_log: directory for tensorboard and csv logs, or None.

    Raises:
        ValueError: for a bad hyperparameter (naming it and what is allowed), an unknown id or an
            id that is not a gfn_envs task, or an unavailable device.
        TypeError: for an unknown keyword argument (listing the accepted ones).
    """

    def __init__(
        self,
        policy: str,
        env: Any,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        lr_z: float = 0.1,
        net_arch: Iterable[int] = (256, 256, 256, 256),
        log_reward_clip: float | None = -12.0,
        env_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        verbose: int = 0,
        tensorboard_log: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unknown keyword argument(s) {sorted(unknown)}; "
                f"allowed: {_keyword_parameters(type(self))}"
            )
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        check_positive("batch_size", batch_size, integer=True)
        check_positive("learning_rate", learning_rate)
        check_positive("lr_z", lr_z)
        if log_reward_clip is not None and (
            isinstance(log_reward_clip, bool)
            or not isinstance(log_reward_clip, (int, float))
            or not math.isfinite(log_reward_clip)
        ):
            raise ValueError(
                f"log_reward_clip must be a finite number or None, got {log_reward_clip!r}"
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be an integer >= 0 or None, got {seed!r}")
        if verbose not in (0, 1, 2) or isinstance(verbose, bool):
            raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
        if tensorboard_log is not None and not isinstance(tensorboard_log, (str, os.PathLike)):
            raise ValueError(f"tensorboard_log must be a path or None, got {tensorboard_log!r}")
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise ValueError(f"env_kwargs must be a dict or None, got {type(env_kwargs).__name__}")
        self.parallel, self.device = distributed.join(check_device(device))
        self.local_batch_size = distributed.local_share(batch_size, self.parallel)
        self.env_id, self.env_kwargs = env_identity(env, env_kwargs)
        if isinstance(env, str):
            env = gym.make(self.env_id, **{"device": str(self.device), **(env_kwargs or {})})
        self.task: Task = task_of(env)
        if self.task.device != self.device:
            raise ValueError(
                f"the env's task lives on {self.task.device} but device={self.device}; "
                "build the env with device= as well"
            )
        self.policy_name, self.batch_size = policy, batch_size
        self.learning_rate, self.lr_z = float(learning_rate), float(lr_z)
        self.net_arch = tuple(net_arch)
        self.log_reward_clip = log_reward_clip
        self.seed, self.verbose = seed, verbose
        self.tensorboard_log = None if tensorboard_log is None else os.fspath(tensorboard_log)
        self._fingerprint: dict[str, Any] | None = None
        self.forward_env = self._vector_env("forward")
        self.backward_env = self._vector_env("backward")
        self.generator = torch.Generator(device=self.device)
        if seed is not None:
            self.generator.manual_seed(seed + distributed.rank(self.parallel))
            torch.manual_seed(seed)
        else:
            self.generator.seed()
        self.num_timesteps = self.num_trajectories = self.iteration = 0
        self._logger: Logger | None = None
        self._setup_model()
        distributed.start(self)

    # ------------------------------------------------------------------ subclass API
    @abstractmethod
    def _setup_model(self) -> None:
        """Build ``self.networks`` (a :class:`~gfn_agents.policies.PolicyNetworks`) and optimizers."""

    @abstractmethod
    def train_step(self) -> dict[str, float]:
        """Run one training iteration; return the statistics to log (``transitions`` included)."""

    def _hyperparameters(self) -> dict[str, Any]:
        """Constructor kwargs that rebuild this agent (subclasses extend); JSON values and tuples
        only. ``tensorboard_log`` is left out on purpose: a checkpoint never chooses where the
        loading process writes files."""
        return {
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "lr_z": self.lr_z,
            "net_arch": self.net_arch,
            "log_reward_clip": self.log_reward_clip,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    def _modules(self) -> dict[str, nn.Module | torch.optim.Optimizer]:
        """Everything with a ``state_dict`` that a checkpoint must hold (subclasses extend)."""
        return {"networks": self.networks, **self.optimizers}

    # ------------------------------------------------------------------ helpers
    networks: Any
    optimizers: dict[str, torch.optim.Optimizer]

    def _vector_env(self, direction: str) -> GFlowNetVectorEnv:
        return GFlowNetVectorEnv(
            self.local_batch_size,
            self.task,
            direction=direction,
            autoreset_mode="disabled",
            tensors=True,
        )

    def clipped_log_rewards(self, log_rewards: Tensor) -> Tensor:
        """log R̂(x) = max(log R(x), clip) (the paper's −12), or log R(x) without a clip."""
        return clip_log_rewards(log_rewards, self.log_reward_clip)

    @property
    def log_z(self) -> float:
        """The current estimate of log Z."""
        return float(self.networks.log_z.detach())

    @property
    def is_main(self) -> bool:
        """Whether this process logs, evaluates and writes checkpoints (rank 0, or alone)."""
        return distributed.rank(self.parallel) == 0

    def get_env(self) -> GFlowNetVectorEnv:
        """The vector env the agent samples through (SB3 callbacks read it)."""
        return self.forward_env

    @property
    def logger(self) -> Logger:
        if self._logger is None:
            formats = ["stdout"] if self.verbose and self.is_main else []
            if self.tensorboard_log is not None and self.is_main:
                formats += ["csv", "tensorboard"]
            self._logger = configure(self.tensorboard_log, formats)
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Use an SB3 logger of your own."""
        self._logger = logger

    # ------------------------------------------------------------------ policy views
    def forward_log_probs(self, obs: Tensor, mask: Tensor) -> Tensor:
        """log P_F(·|s) for observations and masks; the ``forward_policy`` of the exact DP."""
        with torch.no_grad():
            obs = obs.to(self.device, torch.float32)
            return policy_log_probs(self.networks.forward_outputs, obs, mask.to(self.device))

    def predict(
        self,
        observation: np.ndarray | Tensor,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
        action_masks: np.ndarray | Tensor | None = None,
    ) -> tuple[np.ndarray, None]:
        """Forward actions for observations ``[obs_dim]`` or ``[B, obs_dim]`` (SB3's signature).

        Without ``action_masks`` every action is allowed, as in SB3; pass the env's masks to get
        legal actions only.
        """
        obs_dim, n_actions = self.task.obs_dim, self.task.n_actions
        array = np.asarray(observation.cpu() if isinstance(observation, Tensor) else observation)
        if array.ndim not in (1, 2) or array.shape[-1] != obs_dim:
            raise ValueError(
                f"observation must have shape ({obs_dim},) or (batch, {obs_dim}), got {array.shape}"
            )
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise ValueError(f"observation must be numeric, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError("observation must be finite, got NaN or inf")
        single = array.ndim == 1
        obs = torch.as_tensor(array, dtype=torch.float32, device=self.device).reshape(-1, obs_dim)
        if action_masks is None:
            mask = torch.ones(len(obs), n_actions, dtype=torch.bool, device=self.device)
        else:
            masks = np.asarray(
                action_masks.cpu() if isinstance(action_masks, Tensor) else action_masks
            )
            if masks.dtype != np.bool_ or masks.size != len(obs) * n_actions:
                raise ValueError(
                    f"action_masks must be bool of shape ({n_actions},) or ({len(obs)}, "
                    f"{n_actions}) like the observation, got {masks.dtype} {masks.shape}"
                )
            mask = torch.as_tensor(masks, device=self.device).reshape(len(obs), n_actions)
            if not bool(mask.any(dim=1).all()):
                raise ValueError("action_masks must allow at least one action in every row")
        log_probs = self.forward_log_probs(obs, mask)
        if deterministic:
            actions = log_probs.argmax(dim=1)
        else:
            actions = torch.multinomial(log_probs.exp(), 1, generator=self.generator).squeeze(1)
        out = actions.cpu().numpy()
        return (out[0] if single else out), None

    def sample(self, n: int) -> Tensor:
        """``n`` terminal objects sampled from P_F, ``[n, *state_shape]``."""
        check_positive("n", n, integer=True)
        out = []
        env = (
            self.forward_env
            if n >= self.local_batch_size
            else GFlowNetVectorEnv(n, self.task, autoreset_mode="disabled", tensors=True)
        )
        while sum(len(x) for x in out) < n:
            traj = sample_trajectories(
                env, self.networks.forward_outputs, self.generator, grad=False
            )
            out.append(traj.objects)
        return torch.cat(out)[:n]

    # ------------------------------------------------------------------ training loop
    def learn(
        self,
        total_timesteps: int | None = None,
        callback: BaseCallback | list[BaseCallback] | None = None,
        log_interval: int = 10,
        *,
        total_trajectories: int | None = None,
        progress_bar: bool = False,
        reset_num_timesteps: bool = True,
    ) -> GFlowNetAlgorithm:
        """Train for ``total_timesteps`` transitions (SB3's meaning, the positional argument) or
        ``total_trajectories`` trajectories (keyword); give exactly one. Budgets count from this
        call when ``reset_num_timesteps``, else from the saved counters (a resumed run continues).

        Training runs whole iterations of ``batch_size`` trajectories and stops after the first
        iteration that reaches the budget: ``total_trajectories=20_000`` with ``batch_size=128``
        runs ⌈20000/128⌉ = 157 iterations, 20,096 trajectories; a ``total_timesteps`` budget is
        passed by less than one iteration's transitions. The progress bar is clamped at the
        budget, so it ends at 100 %.

        Every ``log_interval`` iterations, at every iteration where a callback recorded values
        (an evaluation) and at the last one, the training statistics are dumped to the logger with
        what the callbacks recorded in that iteration; ``on_training_end`` records (the final
        evaluation) land in the last row.
        """
        if (total_trajectories is None) == (total_timesteps is None):
            raise ValueError("give exactly one of total_timesteps and total_trajectories")
        name = "total_trajectories" if total_trajectories is not None else "total_timesteps"
        budget = total_trajectories if total_trajectories is not None else total_timesteps
        check_positive(name, budget, integer=True)
        check_positive("log_interval", log_interval, integer=True)
        if reset_num_timesteps:
            self.num_timesteps = self.num_trajectories = self.iteration = 0

        def progress() -> int:
            return self.num_trajectories if total_trajectories is not None else self.num_timesteps

        target = budget if reset_num_timesteps else progress() + budget
        callbacks = callback if isinstance(callback, list) else [callback] if callback else []
        if not all(isinstance(c, BaseCallback) for c in callbacks):
            raise ValueError(
                f"callback must be an SB3 BaseCallback, a list or None, got {callback!r}"
            )
        cb = CallbackList(callbacks if self.is_main else [])
        cb.init_callback(self)  # type: ignore[arg-type]
        cb.on_training_start(locals(), globals())
        bar = tqdm(
            total=target,
            initial=progress(),
            disable=not (progress_bar and self.is_main),
            unit="traj" if total_trajectories is not None else "step",
        )
        start, start_traj = time.perf_counter(), self.num_trajectories
        start_iteration = self.iteration
        try:
            while progress() < target:
                stats = distributed.end_iteration(self, self.train_step())
                before = progress()
                self.iteration += 1
                self.num_trajectories += self.batch_size
                self.num_timesteps += int(stats.pop("transitions"))
                bar.update(min(progress(), target) - min(before, target))
                # evaluations are recorded here, before this dump; every rank stops together
                keep_going = distributed.agree(self, cb.on_step())
                last = not keep_going or progress() >= target
                if self.iteration % log_interval == 0 or last or self.logger.name_to_value:
                    for key, value in stats.items():
                        self.logger.record(f"train/{key}", value)
                    self.logger.record("time/iterations", self.iteration)
                    self.logger.record("time/trajectories", self.num_trajectories)
                    rate = (self.num_trajectories - start_traj) / (time.perf_counter() - start)
                    self.logger.record("time/trajectories_per_s", rate)
                    if not last:
                        self.logger.dump(step=self.num_timesteps)
                if not keep_going:
                    break
        finally:
            bar.close()
        cb.on_training_end()
        if self.iteration > start_iteration:
            self.logger.dump(step=self.num_timesteps)
        return self

    # ------------------------------------------------------------------ persistence
    def _rng_state(self) -> dict[str, Tensor]:
        state = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        return {**state, **distributed.generator_states(self)}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a checkpoint (:mod:`gfn_agents.checkpoint`) atomically; ``.zip`` is appended
        when missing. It holds the hyperparameters, the env spec (id, kwargs, task fingerprint),
        every network and optimizer state, the RNG states and the counters. In a data-parallel
        run only rank 0 writes, with the world size and every rank's generator state."""
        if not self.is_main:
            return
        if self._fingerprint is None:
            self._fingerprint = task_fingerprint(self.task)
        metadata = {
            "algorithm": type(self).__name__,
            "policy": self.policy_name,
            "env": {"id": self.env_id, "kwargs": self.env_kwargs, "fingerprint": self._fingerprint},
            "hyperparameters": self._hyperparameters(),
            "num_timesteps": self.num_timesteps,
            "num_trajectories": self.num_trajectories,
            "iteration": self.iteration,
            "world_size": 1 if self.parallel is None else self.parallel.world_size,
        }
        modules = {name: module.state_dict() for name, module in self._modules().items()}
        write_checkpoint(path, metadata, modules, self._rng_state())

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        env: Any = None,
        device: str | torch.device = "cpu",
        strict_env: bool = True,
        **kwargs: Any,
    ) -> GFlowNetAlgorithm:
        """Rebuild an agent from :meth:`save`'s checkpoint, never unpickling anything.

        The env is rebuilt from the saved id and kwargs unless ``env`` is given; either way its
        task must match the saved fingerprint (structure and log R of probe objects), else a
        ValueError names both specs. ``strict_env=False`` loads into a different task of the
        same shape with a warning. ``kwargs`` override saved hyperparameters or add ones a
        checkpoint cannot hold (``tensorboard_log``, a ``guide`` or ``backward_policy`` object).
        Training resumes with ``learn(..., reset_num_timesteps=False)``.

        Raises:
            FileNotFoundError: no file at ``path`` (nor at ``path + ".zip"``).
            ValueError: a damaged, incomplete, foreign or refused file, another algorithm, or a
                task that does not match.
        """
        ckpt = read_checkpoint(path, check_device(device))
        meta, path = ckpt.metadata, ckpt.path
        saved_name = str(meta["algorithm"])
        if cls is GFlowNetAlgorithm and saved_name in AGENT_CLASSES:
            algorithm = agent_class(saved_name)
        else:
            algorithm = cls
        if saved_name != algorithm.__name__:
            hint = "" if saved_name in AGENT_CLASSES else f"; load it with {saved_name}.load()"
            raise ValueError(f"{path} holds a {saved_name}, not a {cls.__name__}{hint}")
        saved_env = meta["env"]
        env_kwargs = None
        if env is None:
            if saved_env["id"] is None:
                raise ValueError(f"{path} was trained on an unregistered env; pass env= to load()")
            env, env_kwargs = saved_env["id"], saved_env["kwargs"]
        try:
            agent = algorithm(
                meta["policy"],
                env,
                env_kwargs=env_kwargs,
                device=device,
                **{**meta["hyperparameters"], **kwargs},
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path} does not rebuild a {saved_name}: {exc}") from exc
        context = check_env(
            path, saved_env, agent.env_id, agent.env_kwargs, agent.task, strict=strict_env
        )
        restore_modules(ckpt, agent._modules(), context)
        try:
            distributed.resume(agent, ckpt.rng)
            torch.set_rng_state(ckpt.rng["torch"].cpu())
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{path} is damaged: its RNG state does not load ({exc})") from exc
        agent.num_timesteps = meta["num_timesteps"]
        agent.num_trajectories = meta["num_trajectories"]
        agent.iteration = meta["iteration"]
        agent._fingerprint = saved_env["fingerprint"] if strict_env else None
        return agent
