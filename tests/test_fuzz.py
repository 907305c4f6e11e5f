"""Fuzzing every registered id, forward and backward: random (also invalid) start states and random
(also illegal or out-of-range) actions. Nothing hangs: an accepted start is finished by legal steps
within ``max_length``; every refusal is a ``ValueError``/``TypeError`` that names what was wrong."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gfn_envs import ENVIRONMENTS, GFlowNetEnv, IllegalActionError
from gfn_envs.task import Task

IDS = sorted(ENVIRONMENTS)
if not __import__("importlib").util.find_spec("RNA"):
    IDS.remove("RNABinding-v0")

EXAMPLES = 25
RANDOM_STEPS = 30


@cache
def make(name: str, direction: str, illegal_action: str) -> GFlowNetEnv:
    task, defaults = ENVIRONMENTS[name]
    return GFlowNetEnv(task, direction=direction, illegal_action=illegal_action, **defaults)


def value_range(task: Task) -> tuple[int, int]:
    """The smallest and largest entries of valid states (HyperGrid cells, sequence symbols with −1
    for empty slots, BayesNet 0/1)."""
    states = task.sample_terminal(64, torch.Generator().manual_seed(0))
    return min(int(states.min()), int(task.s0(1).min())), int(states.max())


@st.composite
def starts(draw: st.DrawFn, task: Task) -> object:
    """None (a drawn start), a valid terminal object, a perturbed one, random entries near the
    valid range, a wrong length, floats or junk."""
    kind = draw(
        st.sampled_from(["none", "valid", "perturbed", "random", "length", "float", "junk"])
    )
    size = int(np.prod(task.state_shape))
    low, high = value_range(task)
    if kind == "none":
        return None
    if kind in ("valid", "perturbed"):
        seed = draw(st.integers(0, 2**16))
        x = task.sample_terminal(1, torch.Generator().manual_seed(seed))[0].flatten().tolist()
        if kind == "perturbed":
            i = draw(st.integers(0, size - 1))
            x[i] = draw(st.integers(low - 2, high + 2))
        return x
    if kind == "random":
        return draw(st.lists(st.integers(low - 2, high + 2), min_size=size, max_size=size))
    if kind == "length":
        n = draw(st.integers(0, size + 3).filter(lambda n: n != size))
        return draw(st.lists(st.integers(low, high), min_size=n, max_size=n))
    if kind == "float":
        return [float(v) for v in range(size)]
    return draw(st.sampled_from(["x", [["a"]] * size, [1, [2, 3]], 2**70, object()]))


def finish(env: GFlowNetEnv, info: dict, steps_taken: int, rng: np.random.Generator) -> None:
    """Legal steps (exit preferred) must end the episode within the task's max_length."""
    for _ in range(env.task.max_length - steps_taken + 1):
        legal = np.flatnonzero(info["action_mask"])
        assert len(legal), f"no legal action in the live state {info['state'].tolist()}"
        exit_ = env.task.exit_action if env.direction == "forward" else None
        action = exit_ if exit_ in legal and rng.random() < 0.5 else int(rng.choice(legal))
        _, _, terminated, _, info = env.step(action)
        if terminated:
            return
    raise AssertionError(f"an episode outlived max_length={env.task.max_length}")


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("name", IDS)
@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(data=st.data())
def test_random_starts_and_actions(name: str, direction: str, data: st.DataObject) -> None:
    strict = data.draw(st.booleans(), label="strict")
    env = make(name, direction, "raise" if strict else "noop")
    start = data.draw(starts(env.task), label="start")
    options = None if start is None else {"state": start}
    try:
        _, info = env.reset(seed=data.draw(st.integers(0, 99)), options=options)
    except (ValueError, TypeError) as error:
        assert direction == "forward" or start is not None
        assert "options['state']" in str(error)
        return
    n = env.action_space.n
    legal_steps = 0
    for _ in range(RANDOM_STEPS):
        action = data.draw(st.one_of(st.integers(-2, n + 1), st.sampled_from([1.5, "0", None])))
        valid = isinstance(action, int) and 0 <= action < n
        legal = valid and bool(info["action_mask"][action])
        try:
            _, reward, terminated, _, info = env.step(action)
        except IllegalActionError as error:
            assert strict and valid and not legal
            assert f"action {action} is illegal" in str(error)
            continue
        except (ValueError, TypeError) as error:
            assert not valid and "action must be an integer" in str(error)
            continue
        assert legal or (info["illegal_action"] and reward == 0.0 and not terminated)
        legal_steps += legal
        assert legal_steps <= env.task.max_length
        if terminated:
            return
    finish(env, info, legal_steps, np.random.default_rng(legal_steps))
