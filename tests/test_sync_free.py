"""The sync-free rollout (the default on CUDA) samples exactly the compacting rollout's trajectories.

On the CPU the sync-free loop is forced with ``sync_free=True``: its :class:`DoneWatcher` then reads
each "all done" flag ``lag − 1`` steps late, so the no-op steps after the last exit are exercised
too. The CUDA tests (skipped without a GPU) check that no host synchronisation happens inside the
loop (``torch.cuda.set_sync_debug_mode("error")``), that exact evaluation on the GPU equals the
CPU's, and that every preset trains on the GPU.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_agents import evaluate_sampler, make_agent
from gfn_agents.policies import PolicyNetworks
from gfn_agents.rollout import DoneWatcher, Trajectories, sample_trajectories
from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.tasks.hypergrid import HyperGrid

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
PRESETS = ("RL-U", "RL-B", "RL-G", "RL-T", "TB", "DB", "SubTB")


def networks(task: HyperGrid) -> PolicyNetworks:
    torch.manual_seed(0)
    return PolicyNetworks.for_task(task, (32, 32), learn_backward=True)


def assert_same(a: Trajectories, b: Trajectories) -> None:
    for key in ("valid", "states", "masks", "actions", "objects"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    # the policy sees a batch of another size, so its outputs may differ in the last bits
    for key in ("obs", "outputs", "log_probs", "log_rewards"):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize("shape", [(2, 8), (3, 4)])
@pytest.mark.parametrize(("epsilon", "temperature"), [(0.0, 1.0), (0.3, 2.0)])
def test_sync_free_forward_and_backward_rollouts_equal_the_compacting_ones(
    shape: tuple[int, int], epsilon: float, temperature: float
) -> None:
    task = HyperGrid(ndim=shape[0], height=shape[1])
    nets = networks(task)
    forward = GFlowNetVectorEnv(24, task, autoreset_mode="disabled", tensors=True)
    rollouts = []
    for sync_free in (False, True):
        generator = torch.Generator().manual_seed(7)
        rollouts.append(
            sample_trajectories(
                forward,
                nets.forward_outputs,
                generator,
                epsilon=epsilon,
                temperature=temperature,
                sync_free=sync_free,
            )
        )
    assert_same(*rollouts)
    lengths = rollouts[0].lengths
    assert int(lengths.min()) < int(lengths.max())  # rows finish at different steps

    backward = GFlowNetVectorEnv(
        24, task, direction="backward", autoreset_mode="disabled", tensors=True
    )
    objects = rollouts[0].objects
    back = [
        sample_trajectories(
            backward, nets.backward_logits, torch.Generator().manual_seed(8), objects, sync_free=s
        )
        for s in (False, True)
    ]
    assert_same(*back)
    uniform = [
        sample_trajectories(forward, None, torch.Generator().manual_seed(9), sync_free=s)
        for s in (False, True)
    ]
    assert_same(*uniform)


@pytest.mark.parametrize("sync_free", [False, True])
def test_rollout_from_s0_only_is_empty_not_an_error(sync_free: bool) -> None:
    """Backward rollouts from objects that are all s0 (every forward trajectory exited at once)
    take no action: an empty batch with the right shapes, whose losses are 0."""
    task = HyperGrid(ndim=2, height=8)
    nets = networks(task)
    env = GFlowNetVectorEnv(4, task, direction="backward", autoreset_mode="disabled", tensors=True)
    traj = sample_trajectories(
        env, nets.backward_logits, torch.Generator(), task.s0(4), sync_free=sync_free
    )
    assert traj.valid.shape == (0, 4) and traj.actions.shape == (0,)
    assert traj.obs.shape == (0, task.obs_dim) and traj.outputs is not None
    assert traj.outputs.shape == (0, task.n_backward_actions)
    assert torch.equal(traj.lengths, torch.zeros(4, dtype=torch.long))
    assert float(traj.log_probs.detach().sum()) == 0.0


@pytest.mark.parametrize("lag", [1, 2, 4])
def test_done_watcher_reads_each_flag_lag_minus_one_steps_late_on_the_cpu(lag: int) -> None:
    watcher = DoneWatcher(torch.device("cpu"), lag=lag)
    flags = [False, False, True, True, True, True, True]
    seen = [watcher.push(torch.tensor(flag)) for flag in flags]
    first_true = flags.index(True)
    assert seen.index(True) == first_true + lag - 1
    assert not any(seen[: first_true + lag - 1])


# ---------------------------------------------------------------------------- CUDA
@cuda
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_cuda_rollout_loop_never_synchronises(
    direction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync-free loop (noise, policy, action choice, env step, done watcher) runs under
    ``torch.cuda.set_sync_debug_mode("error")``, where any host-device synchronisation raises;
    the reset before the loop and the compaction after it are allowed one each."""
    from gfn_agents import rollout

    loop, armed = rollout._rollout_loop, []

    def checked(*args: Any) -> Any:
        assert args[-1] is True  # the sync-free loop, the default on CUDA
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            with pytest.raises(RuntimeError):  # the check is armed: a host read raises
                bool(torch.ones(1, device="cuda").all())
            armed.append(True)
            return loop(*args)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(rollout, "_rollout_loop", checked)
    task = HyperGrid(ndim=2, height=16, device="cuda")
    nets = networks(task)
    env = GFlowNetVectorEnv(64, task, direction=direction, autoreset_mode="disabled", tensors=True)
    generator = torch.Generator(device="cuda").manual_seed(0)
    starts = task.sample_terminal(64, generator) if direction == "backward" else None
    policy = nets.forward_outputs if direction == "forward" else nets.backward_logits
    traj = sample_trajectories(env, policy, generator, starts, epsilon=0.1)
    assert armed and traj.actions.is_cuda
    assert traj.valid.shape[1] == 64 and bool(env.done.all())


@cuda
def test_cuda_exact_evaluation_equals_the_cpu_one() -> None:
    cpu = make_agent("TB", "gfn_envs/HyperGrid-v0", env_kwargs={"ndim": 2, "height": 8}, seed=0)
    gpu = make_agent(
        "TB",
        "gfn_envs/HyperGrid-v0",
        env_kwargs={"ndim": 2, "height": 8, "device": "cuda"},
        device="cuda",
        seed=0,
    )
    gpu.networks.load_state_dict(cpu.networks.state_dict())
    a, b = evaluate_sampler(cpu), evaluate_sampler(gpu)
    assert a.keys() == b.keys()
    for key in a:
        assert math.isclose(a[key], b[key], rel_tol=1e-4, abs_tol=1e-6), key


@cuda
@pytest.mark.parametrize("name", PRESETS)
def test_cuda_short_training_run(name: str) -> None:
    kwargs: dict[str, Any] = {"net_arch": (32, 32), "batch_size": 64, "seed": 0}
    if name.startswith("RL-"):
        kwargs["value_net_arch"] = (32, 32)
    agent = make_agent(
        name,
        "gfn_envs/HyperGrid-v0",
        env_kwargs={"ndim": 2, "height": 8, "device": "cuda"},
        device="cuda",
        **kwargs,
    )
    before = evaluate_sampler(agent)["tv"]
    agent.learn(total_trajectories=64 * 30)
    after = evaluate_sampler(agent)["tv"]
    assert math.isfinite(after) and after < before
