"""Guided distributions P_G for RL-G (paper section 2.7), and the registry that lets checkpoints
rebuild them.

RL-G trains the backward policy P_B towards a guided forward distribution P_G instead of towards the
current P_F: the backward cost of a step s' → s is log P_B(s|s') − log P_G(s'|s). A guide scores the
*forward* transitions s → s' of trajectories sampled backwards from terminal objects x, with the
convention of :class:`gfn_envs.scoring.Guide`: it receives log P_F(·|s) normalised over the legal
actions, so it depends on P_F's probabilities only, never on an offset of its logits. The
HyperGrid and DAG guides are P_F with a capped exit probability (:class:`ExitCapGuide`); the
sequence guide ignores P_F and scores children by the rewards of the objects seen so far.

A task offers its default guide through :meth:`gfn_envs.task.Task.default_guide`; any object with
the :class:`Guide` methods plugs in. A guide with state (a replay buffer) may also define
``state_dict()`` and ``load_state_dict(state)``; agent checkpoints then hold that state.

**Checkpoints.** An agent trained with the task's default guide rebuilds it from the task. A guide
passed explicitly is saved as its registered name and ``config()`` (JSON-able constructor
arguments besides the task); :func:`register_guide` makes a class of your own saveable. Saving an
agent whose guide class is not registered is refused with a ``ValueError`` that says so.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gfn_envs.scoring import Guide, gather, masked_log_softmax
from gfn_envs.task import Task

GUIDES: dict[str, type] = {}
"""Registered guide classes by name (see :func:`register_guide`)."""


def register_guide(cls: type) -> type:
    """Class decorator: make guides of ``cls`` saveable in agent checkpoints.

    The class must be built as ``cls(task, **config)`` and define ``config()``, returning that
    ``config`` as JSON-able values (numbers, strings, lists); tensor state goes through
    ``state_dict()`` / ``load_state_dict()``.
    """
    if not callable(getattr(cls, "config", None)):
        raise TypeError(f"{cls.__name__} needs a config() method to be registered as a guide")
    GUIDES[cls.__name__] = cls
    return cls


def guide_spec(guide: Guide) -> dict[str, Any]:
    """``{"name": ..., "config": ...}``: what a checkpoint stores to rebuild ``guide``.

    Raises:
        ValueError: the guide's class is not registered, so no checkpoint could rebuild it.
    """
    name = type(guide).__name__
    if GUIDES.get(name) is not type(guide):
        raise ValueError(
            f"the guide {name} cannot be saved: a checkpoint rebuilds a guide from its registered "
            "class name and config(); decorate the class with gfn_envs.guides.register_guide "
            "(it needs a config() method returning its constructor kwargs), or train with the "
            "task's default guide (guide=None)"
        )
    return {"name": name, "config": guide.config()}  # type: ignore[attr-defined]


def make_guide(task: Task, spec: dict[str, Any]) -> Guide:
    """Rebuild a guide from :func:`guide_spec`'s ``spec`` on ``task``."""
    name = spec.get("name") if isinstance(spec, dict) else None
    if name not in GUIDES:
        raise ValueError(
            f"unknown guide {name!r}; registered guides: {sorted(GUIDES)} (a guide class of your "
            "own must be imported and registered with gfn_envs.guides.register_guide first)"
        )
    return GUIDES[name](task, **spec.get("config", {}))


@register_guide
class ExitCapGuide:
    """P_F with the exit probability capped at ``exp(cap)`` in states whose log-reward ≤ ``threshold``.

    With p = P_F(·|s) and, in a low-reward terminal state (log R(s) ≤ threshold), the exit entry
    replaced by p'_exit = min(p_exit, e^cap) (all other entries p'_a = p_a), the guide renormalises:

        P_G(a|s) = p'_a / Σ_{a'} p'_{a'},    so P_G(exit|s) = min(p_exit, e^cap) / (1 − p_exit + p'_exit).

    The mass P_F puts on stopping in low-reward states moves to the other actions in proportion,
    so P_B is steered towards paths that do not stop early there. HyperGrid: threshold log R0, cap
    log 1e-5 (the paper's values). P_G depends on P_F's probabilities only. The paper's code caps
    the raw exit *logit* instead, which makes P_G depend on the logits' offset: for logits
    [3, 3, 0] and cap log 1e-5 it gives P_G(exit) = 2.5e-7, where this guide gives 1.02e-5.
    """

    def __init__(self, task: Task, threshold: float, cap: float = math.log(1e-5)) -> None:
        for name, value in (("threshold", threshold), ("cap", cap)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(cap) or cap > 0:
            raise ValueError(f"cap must be a finite log-probability (<= 0), got {cap!r}")
        self.task, self.threshold, self.cap = task, float(threshold), float(cap)

    def config(self) -> dict[str, float]:
        """The constructor arguments besides the task (see :func:`register_guide`)."""
        return {"threshold": self.threshold, "cap": self.cap}

    def observe(self, objects: Tensor, log_rewards: Tensor) -> None:
        """Stateless: nothing to record."""

    def log_prob(self, states: Tensor, actions: Tensor, log_pf: Tensor, objects: Tensor) -> Tensor:
        """log P_G(actions | states), ``[N]`` (see the class docstring)."""
        exit_ = self.task.exit_action
        legal = torch.isfinite(log_pf)
        terminal = legal[:, exit_]
        low = torch.zeros_like(terminal)
        if bool(terminal.any()):
            low[terminal] = self.task.log_reward(states[terminal]) <= self.threshold
        capped = log_pf.clone()
        capped[:, exit_] = torch.where(low, log_pf[:, exit_].clamp(max=self.cap), log_pf[:, exit_])
        return gather(masked_log_softmax(capped, legal), actions)


__all__ = ["GUIDES", "ExitCapGuide", "Guide", "guide_spec", "make_guide", "register_guide"]
