"""Gymnasium adapters over a batched task: a native batch (:class:`GFlowNetVectorEnv`) and one object
(:class:`GFlowNetEnv`, a one-row view of the batch), in the forward or the backward direction.

The episode semantics are written once, in :class:`GFlowNetVectorEnv`; :class:`GFlowNetEnv` runs a
one-row vector env with autoreset disabled and adds the single-env conventions (numpy scalars, an
error when stepping a finished episode, rendering).

* **Forward direction.** Episodes start at s0. Actions are the task's forward actions, exit last.
  A move gives reward 0; exit gives reward log R(x) and ``terminated=True``, and the final
  observation is that of x itself. Every episode ends within ``task.max_length`` legal steps, so
  there is no truncation. A log-reward that is NaN or +inf at an exit raises ``ValueError`` naming
  the task and the object (−inf, R(x) = 0, is allowed).
* **Backward direction** (``direction="backward"``). Episodes start at a terminal object x, given as
  ``reset(options={"state": x})`` (``"states"`` for a batch) or drawn by a uniform random forward
  walk when absent. Given starts go through ``task.validate_states`` and must be terminal objects.
  Actions are the task's backward actions; every step gives reward 0 and the episode terminates
  when it reaches s0. Reward wrappers (:mod:`gfn_envs.wrappers`) add the policy-dependent rewards.
* **Masks.** ``info["action_mask"]`` is always the mask of the state returned with it
  (``info["state"]``, whose observation is returned), also when an episode has just ended
  (forward: the mask of x, where exit is legal; backward: the mask of s0, which is empty), so code
  that picks a random legal action never meets an empty row it did not expect. ``action_masks()``
  (the sb3-contrib convention) gives the actions legal *now*: none for a finished sub-env, whose
  action is ignored (``"next_step"`` before its reset, ``"disabled"`` until ``reset_mask``).
* **Dead ends.** A legal step that reaches a state which is neither finished (exit taken, s0
  reached) nor has a legal action raises ``ValueError``: the task's masks are inconsistent there.
* **Illegal actions.** With ``illegal_action="noop"`` (the default, which Gymnasium's ``check_env``
  needs since it sends unmasked random actions) an illegal action leaves the state unchanged, gives
  reward 0 and sets ``info["illegal_action"]``. With ``illegal_action="raise"`` (strict mode) it
  raises :class:`~gfn_envs.task.IllegalActionError` naming the action and the legal ones.
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
RENDER_MODES = ("ansi", "rgb_array")
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

    Attributes:
        states: long ``[num_envs, *state_shape]``, the current states (replaced, never written, by
            each step and reset).
        done: bool ``[num_envs]``, the sub-envs whose episode has ended and whose next action is
            ignored (``"next_step"`` and ``"disabled"``; never set with ``"same_step"``).
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
        self._state_mask = self._mask
        self._arange = torch.arange(num_envs, device=self.device)
        self._wide_mask = n >= 8  # then a uint8 product clears finished rows (13x at 1024 x 33)

    # ------------------------------------------------------------------ helpers
    def _masks_of(self, states: Tensor) -> Tensor:
        if self.direction == "forward":
            return self.task.forward_mask(states)
        return self.task.backward_mask(states)

    def _draw_starts(self, n: int) -> Tensor:
        """Forward: s0. Backward: terminal objects from uniform forward walks, never s0 (it has no
        backward move, so such an episode would have no legal action)."""
        if self.direction == "forward":
            return self.task.s0(n)
        states = self.task.sample_terminal(n, self._generator)
        redo = self.task.is_initial(states)
        while bool(redo.any()):
            states[redo] = self.task.sample_terminal(int(redo.sum()), self._generator)
            redo = self.task.is_initial(states)
        return states

    def _given_starts(self, given: Any, n: int, name: str, allow_initial: bool) -> Tensor:
        """Validated backward starts: ``n`` terminal objects (s0 only if ``allow_initial``)."""
        if self.direction == "forward":
            raise ValueError(f"{name} is only for direction='backward'")
        states = self.task.validate_states(given, name)
        if len(states) != n:
            raise ValueError(f"{name} must hold {n} objects, got {len(states)}")
        not_terminal = ~self.task.is_terminal(states)
        if bool(not_terminal.any()):
            row = states[not_terminal][0].tolist()
            what = "a terminal object" if n == 1 else "terminal objects only"
            raise ValueError(f"{name} must be {what}, got {row}, which is not terminal")
        if not allow_initial and bool(self.task.is_initial(states).any()):
            raise ValueError(f"{name} is s0, which has no backward moves")
        return states

    def _out(self, x: Tensor) -> Any:
        return x if self.tensors else x.cpu().numpy()

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self._out(self._state_mask), "state": self._out(self.states)}

    def action_masks(self) -> Any:
        """Bool ``[num_envs, n]``: legal actions of every sub-env (none for finished ones)."""
        return self._out(self._mask)

    def _exit_rewards(self, is_exit: Tensor) -> Tensor:
        """Float32 ``[num_envs]``: log R(x) on the exit rows, 0 elsewhere (non-finite checked)."""
        reward = torch.zeros(self.num_envs, device=self.device)
        log_r = self.task.checked_log_reward(self.states[is_exit])
        return reward.masked_scatter_(is_exit, log_r.to(reward.dtype))

    def _dead_end(self, states: Tensor, mask: Tensor, finished: Tensor) -> ValueError:
        """The error for the first row that is not ``finished`` and has no legal action."""
        row = int((~(mask.any(dim=1) | finished)).nonzero()[0])
        end = "a terminal object" if self.direction == "forward" else "s0"
        return ValueError(
            f"{self.direction} step of {type(self.task).__name__} reached state "
            f"{states[row].tolist()} (sub-env {row}), which is not {end} and has no legal "
            f"{self.direction} action: the task's masks are inconsistent there, or the episode "
            "started from a state that the task's validate_states should refuse"
        )

    def _move(self, a: Tensor, legal: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The move of the ``legal`` rows: (states, masks, terminated, at exit / at s0)."""
        if self.direction == "forward":
            is_exit = legal & (a == self.task.exit_action)
            states = self.task.step_where(self.states, a, legal ^ is_exit)
            return states, self._masks_of(states), is_exit, is_exit
        states = self.task.backward_step_where(self.states, a, legal)
        at_s0 = self.task.is_initial(states)
        return states, self._masks_of(states), legal & at_s0, at_s0

    def advance(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`step`'s move for rollouts on an accelerator: no reward, check, autoreset or host
        sync (given a task whose step, masks and encoding have none). A finished sub-env or an
        illegal action (long ``[num_envs]`` on the device) keeps its row. ``(obs, mask, done)``."""
        legal = self._mask.gather(1, actions.unsqueeze(1)).squeeze(1)
        self.states, self._state_mask, terminated, _ = self._move(actions, legal)
        self.done = self.done | terminated
        self._mask = self._state_mask.masked_fill(self.done.unsqueeze(1), False)
        return self.task.encode(self.states), self._mask, self.done

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
        if given is None:
            starts = self._draw_starts(len(rows))
        else:
            starts = self._given_starts(given, len(rows), "options['states']", allow_initial=True)
        self.states = self.states.clone()
        self.states[rows] = starts
        self.done = self.done.clone()
        self.done[rows] = (
            self.task.is_initial(starts)
            if self.direction == "backward"
            else torch.zeros(len(rows), dtype=torch.bool, device=self.device)
        )
        self._state_mask = self._masks_of(self.states)
        self._mask = self._state_mask & ~self.done.unsqueeze(1)
        return self._out(self.task.encode(self.states)), self._info()

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step every sub-env with its action; see the class docstring for finished sub-envs.

        The host synchronisations per step: forward, one flag read (some row exits, or a dead
        end) plus, on steps where rows exit, the gather of their states and the finiteness check
        of their log-rewards; backward, one flag read (a dead end). Autoreset modes add one read
        (whether some sub-env restarts) and strict mode one (whether an action is illegal).
        """
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
        illegal = legal == was_done  # a finished row's mask is empty, so legal implies not done
        if self.illegal_action == "raise" and bool(illegal.any()):
            i = int(illegal.nonzero()[0])
            raise IllegalActionError(
                f"sub-env {i}: "
                + _illegal_message(
                    self.task, int(a[i]), self._mask[i], self.states[i], self.direction
                )
            )
        states, mask, terminated, ended = self._move(a, legal)
        reward = torch.zeros(self.num_envs, device=self.device)
        if self.direction == "forward":
            # Every row now has a legal action (a terminal state at least exit) unless it is a
            # dead end, so one flag tells whether some row exits or some row is stuck.
            has_action = mask.any(dim=1)
            if bool((terminated >= has_action).any()):
                if not bool(has_action.all()):
                    raise self._dead_end(states, mask, torch.zeros_like(terminated))
                reward = self._exit_rewards(terminated)
        elif not bool((mask.any(dim=1) | ended).all()):
            # Every row not at s0 has a legal backward action unless it is a dead end.
            raise self._dead_end(states, mask, ended)
        self.states = states
        info: dict[str, Any] = {}
        if self.autoreset_mode is AutoresetMode.DISABLED:
            self.done = was_done | terminated
            terminated = self.done
        elif self.autoreset_mode is AutoresetMode.NEXT_STEP:
            if bool(was_done.any()):
                self.states = states.clone()
                starts = self._draw_starts(int(was_done.sum()))
                self.states[was_done] = starts
                mask[was_done] = self._masks_of(starts)
            self.done = terminated
        else:
            self.done = torch.zeros_like(terminated)
            if bool(terminated.any()):
                info["final_obs"] = self._out(self.task.encode(states))
                info["_final_obs"] = self._out(terminated)
                self.states = states.clone()
                starts = self._draw_starts(int(terminated.sum()))
                self.states[terminated] = starts
                mask[terminated] = self._masks_of(starts)
        self._state_mask = mask
        if self._wide_mask:
            live = (~self.done).view(torch.uint8).unsqueeze(1)
            self._mask = (mask.view(torch.uint8) * live).view(torch.bool)
        else:
            self._mask = mask.masked_fill(self.done.unsqueeze(1), False)
        info.update(self._info())
        info["illegal_action"] = self._out(illegal)
        truncated = torch.zeros_like(terminated)
        obs = self.task.encode(self.states)
        return self._out(obs), self._out(reward), self._out(terminated), self._out(truncated), info


class GFlowNetEnv(_TaskViews, gym.Env[np.ndarray, np.int64]):
    """One GFlowNet construction episode at a time, as a ``gymnasium.Env``: a one-row view of
    :class:`GFlowNetVectorEnv` (autoreset disabled), so both share one episode semantics.

    Args:
        task: the task (see :func:`make_task`).
        direction: ``"forward"`` (build from s0) or ``"backward"`` (take apart a terminal object).
        illegal_action: ``"noop"`` or ``"raise"``; see the module docstring.
        render_mode: ``None``, ``"ansi"`` (a line of text) or ``"rgb_array"`` (a small uint8 image
            from :meth:`~gfn_envs.task.Task.render_rgb`; what SB3's ``make_vec_env`` asks for).
            ``gymnasium.make(..., render_mode="human")`` shows the rgb_array frames through
            Gymnasium's ``HumanRendering`` wrapper (pygame).
        **task_kwargs: passed to the task's constructor.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}

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
            _check_choice("render_mode", render_mode, RENDER_MODES)
        self._batch = GFlowNetVectorEnv(
            1, task, direction, "noop", "disabled", tensors=True, **task_kwargs
        )
        self.task = self._batch.task
        self.direction, self.illegal_action, self.render_mode = (
            direction,
            illegal_action,
            render_mode,
        )
        self.observation_space = self._batch.single_observation_space
        self.action_space = self._batch.single_action_space

    @property
    def _state(self) -> Tensor:
        """The current state, ``[1, *state_shape]``."""
        return self._batch.states

    def action_masks(self) -> np.ndarray:
        """Bool ``[n]``: the legal actions in the current state (none once the episode ended)."""
        return self._batch._mask[0].cpu().numpy().copy()

    def _info(self, mask: Tensor) -> dict[str, Any]:
        return {
            "action_mask": mask[0].cpu().numpy().copy(),
            "state": self._state[0].cpu().numpy().copy(),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. Backward episodes take ``options={"state": x}``."""
        super().reset(seed=seed)
        options = dict(options or {})
        state = options.pop("state", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; allowed: ['state']")
        batch_options = None
        if state is not None:
            x = self.task.as_state_tensor(state, "options['state']")
            x = (
                x.reshape(1, *self.task.state_shape)
                if x.numel() == self._state.numel()
                else x[None]
            )
            starts = self._batch._given_starts(x, 1, "options['state']", allow_initial=False)
            batch_options = {"states": starts}
        obs, info = self._batch.reset(seed=seed, options=batch_options)
        return obs[0].cpu().numpy(), self._info(info["action_mask"])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if bool(self._batch.done[0]):
            raise RuntimeError("the episode has ended; call reset() before step()")
        if not self.action_space.contains(action) and not (
            np.ndim(action) == 0
            and np.issubdtype(np.asarray(action).dtype, np.integer)
            and 0 <= int(action) < self.action_space.n
        ):
            raise ValueError(
                f"action must be an integer in [0, {self.action_space.n}), got {action!r}"
            )
        mask = self._batch._mask
        actions = torch.tensor([int(action)], device=self.task.device)
        obs, reward, terminated, _, info = self._batch.step(actions)
        if bool(info["illegal_action"][0]) and self.illegal_action == "raise":
            raise IllegalActionError(
                _illegal_message(self.task, int(action), mask[0], self._state[0], self.direction)
            )
        info = {
            **self._info(info["action_mask"]),
            "illegal_action": bool(info["illegal_action"][0]),
        }
        return obs[0].cpu().numpy(), float(reward[0]), bool(terminated[0]), False, info

    def render(self) -> str | np.ndarray | None:
        """``"ansi"``: the task name and the state; ``"rgb_array"``: ``task.render_rgb(state)``."""
        if self.render_mode == "ansi":
            return f"{type(self.task).__name__} state {self._state[0].tolist()}"
        if self.render_mode == "rgb_array":
            return self.task.render_rgb(self._state[0])
        return None
