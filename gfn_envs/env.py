"""Gymnasium adapters over a batched task: one object (:class:`GFlowNetEnv`) or a native batch
(:class:`GFlowNetVectorEnv`), in the forward or the backward direction.

Semantics shared by both adapters:

* **Forward direction.** Episodes start at s0. Actions are the task's forward actions, exit last.
  A move gives reward 0; exit gives reward log R(x) and ``terminated=True``, and the final
  observation is that of x itself. Every episode ends within ``task.max_length`` legal steps, so
  there is no truncation.
* **Backward direction** (``direction="backward"``). Episodes start at a terminal object x, given as
  ``reset(options={"state": x})`` (``"states"`` for a batch) or drawn by a uniform random forward
  walk when absent. Actions are the task's backward actions; every step gives reward 0 and the
  episode terminates when it reaches s0. Reward wrappers (:mod:`gfn_envs.wrappers`) add the
  policy-dependent rewards of the paper.
* **Masks.** ``action_masks()`` (the sb3-contrib convention) and ``info["action_mask"]`` give the legal
  actions; ``info["state"]`` is the raw integer state.
* **Illegal actions.** With ``illegal_action="noop"`` (the default, which Gymnasium's ``check_env`` needs
  since it sends unmasked random actions) an illegal action leaves the state unchanged, gives reward
  0 and sets ``info["illegal_action"]``. With ``illegal_action="raise"`` (strict mode) it raises
  :class:`~gfn_envs.task.IllegalActionError` naming the action and the legal ones.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import Tensor

from gfn_envs.task import IllegalActionError, Task

DIRECTIONS = ("forward", "backward")
ILLEGAL_ACTIONS = ("noop", "raise")
AUTORESET_MODES = {mode.value: mode for mode in AutoresetMode} | {
    "next_step": AutoresetMode.NEXT_STEP,
    "same_step": AutoresetMode.SAME_STEP,
    "disabled": AutoresetMode.DISABLED,
}


def make_task(task: str | type[Task] | Task, **task_kwargs: Any) -> Task:
    """Build a task from a ``"module:Class"`` path, a :class:`Task` subclass or an instance.

    Unknown keyword arguments raise a ``TypeError`` that lists the ones the task accepts.
    """
    if isinstance(task, Task):
        if task_kwargs:
            raise TypeError(f"task kwargs {sorted(task_kwargs)} given with a task instance")
        return task
    if isinstance(task, str):
        module, _, name = task.partition(":")
        task = getattr(importlib.import_module(module), name)
    if not (isinstance(task, type) and issubclass(task, Task)):
        raise TypeError(f"task must be a Task subclass, instance or 'module:Class', got {task!r}")
    params = inspect.signature(task.__init__).parameters
    allowed = [
        p for p in params if p != "self" and params[p].kind is not inspect.Parameter.VAR_KEYWORD
    ]
    unknown = sorted(set(task_kwargs) - set(allowed))
    if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise TypeError(
            f"{task.__name__} got unknown keyword argument(s) {unknown}; allowed: {allowed}"
        )
    return task(**task_kwargs)


def _check_choice(name: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")


def _observation_space(task: Task) -> spaces.Box:
    return spaces.Box(task.obs_low, task.obs_high, (task.obs_dim,), np.float32)


def _illegal_message(task: Task, action: int, mask: Tensor, state: Tensor, direction: str) -> str:
    legal = mask.nonzero().flatten().tolist()
    return (
        f"{direction} action {action} is illegal in state {state.tolist()} of "
        f"{type(task).__name__}; legal actions: {legal}"
    )


class _TaskViews:
    """The enumeration of the task, as ``env.unwrapped.terminal_states()`` and friends."""

    task: Task

    def terminal_states(self) -> Tensor:
        """Every terminal object, in the order of :meth:`true_distribution` and the exact DP."""
        return self.task.terminal_states()

    def true_distribution(self) -> Tensor:
        """P*(x) = R(x)/Z* over :meth:`terminal_states`, float64."""
        return self.task.true_distribution()

    def log_partition(self) -> float:
        """log Z* = log Σ_x R(x)."""
        return self.task.log_partition()


class GFlowNetEnv(_TaskViews, gym.Env[np.ndarray, np.int64]):
    """One GFlowNet construction episode at a time, as a ``gymnasium.Env``.

    Args:
        task: the task (see :func:`make_task`).
        direction: ``"forward"`` (build from s0) or ``"backward"`` (take apart a terminal object).
        illegal_action: ``"noop"`` or ``"raise"``; see the module docstring.
        render_mode: ``None`` or ``"ansi"``.
        **task_kwargs: passed to the task's constructor.
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        task: str | type[Task] | Task,
        direction: str = "forward",
        illegal_action: str = "noop",
        render_mode: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        _check_choice("direction", direction, DIRECTIONS)
        _check_choice("illegal_action", illegal_action, ILLEGAL_ACTIONS)
        if render_mode is not None:
            _check_choice("render_mode", render_mode, self.metadata["render_modes"])
        self.task = make_task(task, **task_kwargs)
        self.direction, self.illegal_action, self.render_mode = (
            direction,
            illegal_action,
            render_mode,
        )
        self.observation_space = _observation_space(self.task)
        n = self.task.n_actions if direction == "forward" else self.task.n_backward_actions
        self.action_space = spaces.Discrete(n)
        self._state = self.task.s0(1)
        self._done = True
        self._generator = torch.Generator(device=self.task.device)

    def _mask(self) -> Tensor:
        if self._done:
            return torch.zeros(self.action_space.n, dtype=torch.bool)
        if self.direction == "forward":
            return self.task.forward_mask(self._state)[0]
        return self.task.backward_mask(self._state)[0]

    def action_masks(self) -> np.ndarray:
        """Bool ``[n]``: the legal actions in the current state (none once the episode ended)."""
        return self._mask().cpu().numpy().copy()

    def _obs_info(self, mask: Tensor) -> tuple[np.ndarray, dict[str, Any]]:
        obs = self.task.encode(self._state)[0].cpu().numpy()
        info = {"action_mask": mask.cpu().numpy(), "state": self._state[0].cpu().numpy().copy()}
        return obs, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. Backward episodes take ``options={"state": x}``."""
        super().reset(seed=seed)
        if seed is not None:
            self._generator.manual_seed(seed)
        options = dict(options or {})
        state = options.pop("state", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; allowed: ['state']")
        if self.direction == "forward":
            if state is not None:
                raise ValueError("options['state'] is only for direction='backward'")
            self._state = self.task.s0(1)
        else:
            self._state = self._start_state(state)
        self._done = False
        return self._obs_info(self._mask())

    def _start_state(self, state: Any) -> Tensor:
        if state is None:
            while True:
                x = self.task.sample_terminal(1, self._generator)
                if not bool(self.task.is_initial(x)[0]):
                    return x
        x = torch.as_tensor(np.asarray(state))
        x = self.task.validate_states(
            x.reshape(1, *self.task.state_shape)
            if x.numel() == self.task.s0(1).numel()
            else x.unsqueeze(0),
            "options['state']",
        )
        if not bool(self.task.is_terminal(x)[0]):
            raise ValueError(f"options['state'] must be a terminal object, got {x[0].tolist()}")
        if bool(self.task.is_initial(x)[0]):
            raise ValueError("options['state'] is s0, which has no backward moves")
        return x

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("the episode has ended; call reset() before step()")
        if not self.action_space.contains(action) and not (
            np.ndim(action) == 0
            and np.issubdtype(np.asarray(action).dtype, np.integer)
            and 0 <= int(action) < self.action_space.n
        ):
            raise ValueError(
                f"action must be an integer in [0, {self.action_space.n}), got {action!r}"
            )
        a = int(action)
        mask = self._mask()
        if not bool(mask[a]):
            if self.illegal_action == "raise":
                raise IllegalActionError(
                    _illegal_message(self.task, a, mask, self._state[0], self.direction)
                )
            obs, info = self._obs_info(mask)
            return obs, 0.0, False, False, {**info, "illegal_action": True}
        actions = torch.tensor([a], device=self.task.device)
        reward = 0.0
        if self.direction == "forward":
            if a == self.task.exit_action:
                reward = float(self.task.log_reward(self._state)[0])
                self._done = True
            else:
                self._state = self.task.step(self._state, actions)
        else:
            self._state = self.task.backward_step(self._state, actions)
            self._done = bool(self.task.is_initial(self._state)[0])
        obs, info = self._obs_info(self._mask())
        return obs, reward, self._done, False, {**info, "illegal_action": False}

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return f"{type(self.task).__name__} state {self._state[0].tolist()}"
        return None


class GFlowNetVectorEnv(_TaskViews, VectorEnv):
    """A native batch of ``num_envs`` episodes on one task: every step is a few tensor operations.

    Args:
        num_envs: batch size.
        task: the task (see :func:`make_task`).
        direction: ``"forward"`` or ``"backward"``.
        illegal_action: ``"noop"`` or ``"raise"``.
        autoreset_mode: ``"next_step"`` (Gymnasium's default: the step after termination resets
            that sub-env and ignores its action), ``"same_step"`` (resets at once; the terminal
            observation is in ``info["final_obs"]``, rows flagged by ``info["_final_obs"]``) or
            ``"disabled"`` (finished sub-envs stay frozen, ``terminated`` stays true and their
            reward is 0, until ``reset(options={"reset_mask": ...})``; what agents use to collect
            one batch of complete trajectories).
        tensors: return torch tensors on ``device`` instead of numpy arrays, and accept tensors.
            Returned tensors are never written to afterwards (steps and resets make new ones), so
            a caller may keep them without copying.
        device: torch device of the task.
        **task_kwargs: passed to the task's constructor.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        task: str | type[Task] | Task,
        direction: str = "forward",
        illegal_action: str = "noop",
        autoreset_mode: str | AutoresetMode = "next_step",
        tensors: bool = False,
        device: str | torch.device | None = None,
        render_mode: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        _check_choice("direction", direction, DIRECTIONS)
        _check_choice("illegal_action", illegal_action, ILLEGAL_ACTIONS)
        if isinstance(autoreset_mode, str):
            _check_choice("autoreset_mode", autoreset_mode, list(AUTORESET_MODES))
            autoreset_mode = AUTORESET_MODES[autoreset_mode]
        if render_mode is not None:
            raise ValueError(f"render_mode must be None for the vector env, got {render_mode!r}")
        if device is not None and not isinstance(task, Task):
            task_kwargs["device"] = device
        self.task = make_task(task, **task_kwargs)
        self.device = self.task.device
        self.num_envs, self.direction, self.illegal_action = num_envs, direction, illegal_action
        self.autoreset_mode, self.tensors, self.render_mode = autoreset_mode, tensors, None
        self.metadata = {"autoreset_mode": autoreset_mode}
        self.single_observation_space = _observation_space(self.task)
        n = self.task.n_actions if direction == "forward" else self.task.n_backward_actions
        self.single_action_space = spaces.Discrete(n)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._generator = torch.Generator(device=self.device)
        self.states = self.task.s0(num_envs)
        self.done = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        self._mask = torch.zeros(num_envs, n, dtype=torch.bool, device=self.device)
        self._arange = torch.arange(num_envs, device=self.device)

    # ------------------------------------------------------------------ helpers
    def _masks_of(self, states: Tensor) -> Tensor:
        if self.direction == "forward":
            return self.task.forward_mask(states)
        return self.task.backward_mask(states)

    def _start_states(self, n: int, given: Any) -> Tensor:
        if self.direction == "forward":
            if given is not None:
                raise ValueError("options['states'] is only for direction='backward'")
            return self.task.s0(n)
        if given is None:
            # Like the single env, never start at s0: it has no backward move, so such a sub-env
            # would have no legal action and never terminate.
            states = self.task.sample_terminal(n, self._generator)
            redo = self.task.is_initial(states)
            while bool(redo.any()):
                states[redo] = self.task.sample_terminal(int(redo.sum()), self._generator)
                redo = self.task.is_initial(states)
            return states
        states = self.task.validate_states(given, "options['states']")
        if len(states) != n:
            raise ValueError(f"options['states'] must hold {n} objects, got {len(states)}")
        if not bool(self.task.is_terminal(states).all()):
            raise ValueError("options['states'] must all be terminal objects")
        return states

    def _out(self, x: Tensor) -> Any:
        return x if self.tensors else x.cpu().numpy()

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self._out(self._mask), "state": self._out(self.states)}

    def action_masks(self) -> Any:
        """Bool ``[num_envs, n]``: legal actions of every sub-env (none for finished ones)."""
        return self._out(self._mask)

    # ---------------------------------------------------------------- gymnasium
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-envs, or those in ``options["reset_mask"]``.

        Backward episodes start at ``options["states"]`` (one terminal object per reset sub-env).
        """
        super().reset(seed=seed)
        if seed is not None:
            self._generator.manual_seed(seed)
        options = dict(options or {})
        given = options.pop("states", None)
        reset_mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(
                f"unknown reset options {sorted(options)}; allowed: states, reset_mask"
            )
        if reset_mask is None:
            rows = self._arange
        else:
            reset_mask = torch.as_tensor(
                np.asarray(reset_mask) if not isinstance(reset_mask, Tensor) else reset_mask,
                device=self.device,
            )
            if reset_mask.dtype != torch.bool or reset_mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must be bool of shape ({self.num_envs},)")
            rows = reset_mask.nonzero().squeeze(1)
        self.states = self.states.clone()
        self.states[rows] = self._start_states(len(rows), given)
        self.done = self.done.clone()
        self.done[rows] = (
            self.task.is_initial(self.states[rows])
            if self.direction == "backward"
            else torch.zeros(len(rows), dtype=torch.bool, device=self.device)
        )
        self._mask = self._masks_of(self.states) & ~self.done.unsqueeze(1)
        return self._out(self.task.encode(self.states)), self._info()

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step every sub-env with its action; see the class docstring for finished sub-envs."""
        a = torch.as_tensor(actions, device=self.device)
        if a.shape != (self.num_envs,) or a.dtype.is_floating_point or a.dtype == torch.bool:
            raise ValueError(
                f"actions must be integers of shape ({self.num_envs},), "
                f"got dtype {a.dtype} and shape {tuple(a.shape)}"
            )
        a = a.long()
        was_done = self.done
        try:  # gather checks the range, so valid actions cost no extra pass
            legal = self._mask.gather(1, a.unsqueeze(1)).squeeze(1)
        except RuntimeError as exc:
            n = self.single_action_space.n
            raise ValueError(f"actions must lie in [0, {n}), got {a.tolist()}") from exc
        illegal = ~(legal | was_done)
        if self.illegal_action == "raise" and bool(illegal.any()):
            i = int(illegal.nonzero()[0])
            raise IllegalActionError(
                f"sub-env {i}: "
                + _illegal_message(
                    self.task, int(a[i]), self._mask[i], self.states[i], self.direction
                )
            )
        reward = torch.zeros(self.num_envs, device=self.device)
        if self.direction == "forward":
            exit_ = self.task.exit_action
            is_exit = legal & (a == exit_)
            move = legal ^ is_exit
            if bool(is_exit.any()):
                reward.masked_scatter_(
                    is_exit, self.task.log_reward(self.states[is_exit]).to(reward.dtype)
                )
            states = self.task.step_where(self.states, a, move)
            terminated = is_exit
        else:
            states = self.task.backward_step_where(self.states, a, legal)
            terminated = legal & self.task.is_initial(states)
        self.states = states
        info: dict[str, Any] = {}
        if self.autoreset_mode is AutoresetMode.DISABLED:
            self.done = was_done | terminated
            terminated = self.done
        elif self.autoreset_mode is AutoresetMode.NEXT_STEP:
            if bool(was_done.any()):
                self.states[was_done] = self._start_states(int(was_done.sum()), None)
            self.done = terminated
        else:
            self.done = torch.zeros_like(terminated)
            if bool(terminated.any()):
                info["final_obs"] = self._out(self.task.encode(self.states))
                info["_final_obs"] = self._out(terminated)
                self.states = self.states.clone()
                self.states[terminated] = self._start_states(int(terminated.sum()), None)
        self._mask = self._masks_of(self.states).masked_fill_(self.done.unsqueeze(1), False)
        info.update(self._info())
        info["illegal_action"] = self._out(illegal)
        truncated = torch.zeros_like(terminated)
        obs = self.task.encode(self.states)
        return self._out(obs), self._out(reward), self._out(terminated), self._out(truncated), info
