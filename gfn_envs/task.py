"""The batched task contract: a GFlowNet construction task as a pointed DAG.

A task owns the whole combinatorial structure of a GFlowNet problem and works on *batches* of states,
tensors with a leading batch dimension, with no Python loop over the batch. The Gymnasium adapters in
:mod:`gfn_envs.env`, the reward wrappers, the agents and the exact evaluator are all views of one task,
so a mask, a transition or a reward is computed in exactly one place.

Conventions
-----------
* States are integer tensors ``[B, *state_shape]``. ``s0`` is the source of the DAG.
* Forward actions are ``0 .. n_actions - 1``; the **last one is exit** (``exit_action``). Exit moves a
  terminal object x to the sink s_f; it is legal exactly in the states that are terminal objects.
* Backward actions are ``0 .. n_backward_actions - 1``; they never include exit.
* ``step(s, a)`` applies non-exit forward actions, ``backward_step(s', b)`` applies backward actions.
  ``backward_action(s, a)`` is the backward action at ``step(s, a)`` that undoes ``a``, and
  ``forward_action(s', b)`` is the forward action at ``backward_step(s', b)`` that leads back to s'.
* ``log_reward(x)`` is log R(x) of terminal objects; ``encode(s)`` is the float observation a policy sees.
* ``max_length`` bounds the number of forward actions of any complete trajectory, exit included.
* The DAG is *graded* when every path from s0 to s has the same length; the exact evaluator does not
  need that, but every task shipped here has it.

Enumerable tasks also give ``all_states()`` (every state, parents before children), ``state_index``
(the position of a state in that list) and ``terminal_states()``; the target P*(x) = R(x)/Z* and
log Z* then follow.

States that come from outside (a backward start, the objects given to a wrapper or a guide) go
through ``validate_states``, which tasks extend so that it refuses every tensor that is not a state
of their DAG (the base class checks the dtype and the shape). Log-rewards that reach an exit or the
enumeration go through ``checked_log_reward``, which refuses NaN and +inf.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gfn_envs.rendering import cells_image


class IllegalActionError(ValueError):
    """An action was taken where the task's mask forbids it."""


class Task(ABC):
    """A GFlowNet construction task: a pointed DAG over batches of integer states.

    Subclasses set ``state_shape``, ``n_actions``, ``n_backward_actions``, ``obs_dim`` and
    ``max_length`` in their constructor, and implement the abstract methods. Methods never modify
    their inputs.
    """

    state_shape: tuple[int, ...]
    n_actions: int
    n_backward_actions: int
    obs_dim: int
    max_length: int
    obs_low: float = 0.0
    obs_high: float = 1.0

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self._enumeration: dict[str, Tensor] | None = None

    # ----------------------------------------------------------------- structure
    @property
    def exit_action(self) -> int:
        """Index of the exit action, always the last forward action."""
        return self.n_actions - 1

    @abstractmethod
    def s0(self, batch_size: int) -> Tensor:
        """``batch_size`` copies of the source state."""

    def is_initial(self, states: Tensor) -> Tensor:
        """Bool ``[B]``: which states equal s0."""
        return (states == self.s0(1)).flatten(1).all(dim=1)

    @abstractmethod
    def forward_mask(self, states: Tensor) -> Tensor:
        """Bool ``[B, n_actions]``: legal forward actions, exit included."""

    @abstractmethod
    def backward_mask(self, states: Tensor) -> Tensor:
        """Bool ``[B, n_backward_actions]``: legal backward actions (none at s0)."""

    def is_terminal(self, states: Tensor) -> Tensor:
        """Bool ``[B]``: which states are terminal objects (exit is legal there)."""
        return self.forward_mask(states)[:, self.exit_action]

    @abstractmethod
    def step(self, states: Tensor, actions: Tensor) -> Tensor:
        """Children reached by the non-exit forward ``actions`` (long ``[B]``)."""

    @abstractmethod
    def backward_step(self, states: Tensor, actions: Tensor) -> Tensor:
        """Parents reached by the backward ``actions`` (long ``[B]``)."""

    def step_where(self, states: Tensor, actions: Tensor, where: Tensor) -> Tensor:
        """``step`` on the rows flagged by ``where`` (bool ``[B]``); the other rows (exits,
        finished or illegal) are returned unchanged, whatever their action."""
        moved = self.step(states, torch.where(where, actions, 0))
        return torch.where(where.view(-1, *[1] * len(self.state_shape)), moved, states)

    def backward_step_where(self, states: Tensor, actions: Tensor, where: Tensor) -> Tensor:
        """``backward_step`` on the rows flagged by ``where``; the other rows are unchanged."""
        moved = self.backward_step(states, torch.where(where, actions, 0))
        return torch.where(where.view(-1, *[1] * len(self.state_shape)), moved, states)

    @abstractmethod
    def backward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        """The backward action at ``step(states, actions)`` that returns to ``states``."""

    @abstractmethod
    def forward_action(self, states: Tensor, actions: Tensor) -> Tensor:
        """The forward action at ``backward_step(states, actions)`` that returns to ``states``."""

    @abstractmethod
    def log_reward(self, states: Tensor) -> Tensor:
        """Float ``[B]``: log R(x) of terminal objects."""

    @abstractmethod
    def encode(self, states: Tensor) -> Tensor:
        """Float32 ``[B, obs_dim]``: the observation of each state."""

    def sample_terminal(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` terminal objects drawn by a uniform random walk over legal forward actions.

        Used to start backward episodes when no object is given. Enumerable tasks could draw
        uniformly instead, but a walk works for every task.
        """
        states = self.s0(n)
        out = states.clone()
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        for _ in range(self.max_length):
            mask = self.forward_mask(states)
            probs = mask.float()
            actions = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            exits = actions == self.exit_action
            newly = exits & ~done
            out[newly] = states[newly]
            done |= exits
            if bool(done.all()):
                return out
            live = ~done
            states = states.clone()
            states[live] = self.step(states[live], actions[live])
        raise RuntimeError("a trajectory exceeded max_length; the task's masks are inconsistent")

    def checked_log_reward(self, states: Tensor) -> Tensor:
        """:meth:`log_reward`, raising ``ValueError`` where it is NaN or +inf.

        −inf (R(x) = 0) is allowed. The message names the task and the first offending object.
        """
        log_r = self.log_reward(states)
        # One reduction: the float64 sum is NaN or +inf exactly when some entry is NaN or +inf
        # (float32 or float64 entries cannot overflow it).
        total = float(log_r.sum(dtype=torch.float64))
        if math.isnan(total) or total == math.inf:
            i = int((~(log_r < math.inf)).nonzero()[0])
            raise ValueError(
                f"{type(self).__name__}.log_reward returned {float(log_r[i])} for the terminal "
                f"object {states[i].tolist()}; log-rewards must be finite or -inf (R(x) = 0)"
            )
        return log_r

    def default_guide(self) -> Any:
        """The guided distribution P_G that RL-G uses on this task, or None if it has none.

        The object has the methods of :class:`gfn_envs.guides.Guide`; the annotation stays loose
        because the guides build on this module, which therefore does not import them.
        """
        return None

    def render_rgb(self, state: Tensor) -> np.ndarray:
        """A small uint8 ``[H, W, 3]`` picture of one state ``[*state_shape]``.

        Default: the entries of the state as a row-major strip of coloured cells, one colour per
        value, light grey for negative values (empty slots). Tasks override it with a picture of
        their own (HyperGrid draws its grid).
        """
        return cells_image(state.flatten().cpu().numpy())

    def as_state_tensor(self, states: Any, name: str = "states") -> Tensor:
        """``states`` (tensor or array-like) as a long tensor on the task's device.

        Raises ``TypeError`` naming ``name`` unless the values are integers (bool, float and
        non-numeric data are refused).
        """
        if not isinstance(states, Tensor):
            try:
                array = np.asarray(states)
            except (TypeError, ValueError) as error:
                raise TypeError(f"{name} must be an integer array, got {states!r}") from error
            if array.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
            states = torch.as_tensor(array.astype(np.int64))
        if states.dtype.is_floating_point or states.dtype.is_complex or states.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got dtype {states.dtype}")
        return states.to(device=self.device, dtype=torch.long)

    def validate_states(self, states: Any, name: str = "states") -> Tensor:
        """``states`` as long ``[B, *state_shape]`` on the task's device, or a clear error.

        The base class checks the dtype (``TypeError``) and the shape (``ValueError``). Tasks
        extend it (calling ``super()`` first) to refuse values that are not states of their DAG,
        with a ``ValueError`` that names ``name`` and the problem.
        """
        states = self.as_state_tensor(states, name)
        if states.dim() < 1 or tuple(states.shape[1:]) != tuple(self.state_shape):
            raise ValueError(
                f"{name} must have shape [B, {', '.join(map(str, self.state_shape))}], "
                f"got {list(states.shape)}"
            )
        return states

    # --------------------------------------------------------------- enumeration
    @property
    def enumerable(self) -> bool:
        """Whether :meth:`all_states` is implemented (small enough to enumerate)."""
        return False

    def all_states(self) -> Tensor:
        """Every state, each parent before its children."""
        raise NotImplementedError(f"{type(self).__name__} cannot be enumerated")

    def state_index(self, states: Tensor) -> Tensor:
        """Long ``[B]``: position of each state in :meth:`all_states`."""
        raise NotImplementedError(f"{type(self).__name__} cannot be enumerated")

    def terminal_states(self) -> Tensor:
        """Every terminal object, in :meth:`all_states` order.

        This order is the order of :meth:`true_distribution` and of the exact DP. Tasks order
        :meth:`all_states` so that it is also the natural order of their objects.
        """
        states = self.all_states()
        return states[self.is_terminal(states)]

    def terminal_index(self, states: Tensor) -> Tensor:
        """Long ``[B]``: position of each terminal object in :meth:`terminal_states`."""
        enum = self._enumerate()
        return enum["terminal_position"][self.state_index(states)]

    def log_partition(self) -> float:
        """log Z* = log Σ_x R(x), from the enumerated rewards (``ValueError`` if one is NaN or
        +inf, see :meth:`checked_log_reward`)."""
        return float(torch.logsumexp(self._enumerate()["log_rewards"], dim=0))

    def modes(self) -> Tensor:
        """Bool mask over :meth:`terminal_states`: the modes (default: the objects of maximal
        reward, to float32 precision). Tasks with another definition override this."""
        log_rewards = self._enumerate()["log_rewards"]
        return log_rewards >= log_rewards.max() - 1e-6

    def true_distribution(self) -> Tensor:
        """P*(x) = R(x)/Z* over :meth:`terminal_states`, float64."""
        return torch.softmax(self._enumerate()["log_rewards"], dim=0)

    def _enumerate(self) -> dict[str, Tensor]:
        """Cached enumeration tables shared by the metrics and the exact DP."""
        if self._enumeration is None:
            states = self.all_states()
            terminal = self.is_terminal(states)
            position = torch.full((len(states),), -1, dtype=torch.long, device=self.device)
            position[terminal] = torch.arange(int(terminal.sum()), device=self.device)
            terminal_states = self.terminal_states()
            log_rewards = self.checked_log_reward(terminal_states).to(torch.float64)
            self._enumeration = {
                "terminal_position": position,
                "log_rewards": log_rewards,
            }
        return self._enumeration
