"""Data-parallel training on 2 gloo ranks started inside the tests.

:func:`run_ranks` starts the ranks as torchrun would (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT`` in each process's environment), runs a module-level function in
each and returns what each returned; an exception in a rank is re-raised here with its traceback,
and a rank that does not finish within the timeout is killed, so nothing hangs.
"""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import time
import traceback
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from presets import TRAINED_PRESETS
from stable_baselines3.common.callbacks import BaseCallback
from torch import Tensor

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_agents import PRESETS as PRESETS_OF
from gfn_agents import (
    ExactEvalCallback,
    GFlowNetAlgorithm,
    PolicyGradientGFN,
    SoftDQN,
    distributed,
    make_agent,
)

WORLD = 2


class RankError(RuntimeError):
    """An exception raised inside a rank (its type name, message and traceback)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank_entry(
    target: Callable[..., Any], rank: int, port: int, results: Any, args: tuple[Any, ...]
) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    try:
        value, ok = target(rank, *args), True
    except BaseException as exc:  # reported to the test process, which re-raises it
        value, ok = (type(exc).__name__, str(exc), traceback.format_exc()), False
    # Sent as bytes: a tensor sent through a queue as itself lives in shared memory that
    # vanishes when this process exits, possibly before the test process has read it.
    buffer = io.BytesIO()
    torch.save(value, buffer)
    results.put((rank, ok, buffer.getvalue()))


def run_ranks(target: Callable[..., Any], *args: Any, timeout: float = 120.0) -> list[Any]:
    """Run ``target(rank, *args)`` on ``WORLD`` fresh processes; their results in rank order.

    Raises:
        RankError: a rank raised (the first one's message and traceback), or the ranks did not
            all report within ``timeout`` seconds (they are then killed).
    """
    context = mp.get_context("spawn")
    results = context.Queue()
    port = _free_port()
    procs = [
        context.Process(target=_rank_entry, args=(target, rank, port, results, args))
        for rank in range(WORLD)
    ]
    for proc in procs:
        proc.start()
    outcome: dict[int, tuple[bool, Any]] = {}
    try:
        while len(outcome) < WORLD:
            rank, ok, raw = results.get(timeout=timeout)
            outcome[rank] = (ok, torch.load(io.BytesIO(raw), weights_only=True))
    except queue.Empty:
        raise RankError(f"ranks {sorted(set(range(WORLD)) - set(outcome))} timed out") from None
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    for rank in range(WORLD):
        ok, value = outcome[rank]
        if not ok:
            name, message, trace = value
            raise RankError(f"rank {rank} raised {name}: {message}\n{trace}")
    return [outcome[rank][1] for rank in range(WORLD)]


# ---------------------------------------------------------------------------- primitives
def _primitives(rank: int) -> dict[str, Any]:
    parallel, device = distributed.join(torch.device("cpu"))
    assert parallel is not None
    out: dict[str, Any] = {"rank": parallel.rank, "world_size": parallel.world_size}

    # gradients: present on both ranks, on rank 1 only, on neither
    both, one, neither = (torch.nn.Parameter(torch.zeros(3)) for _ in range(3))
    both.grad = torch.full((3,), float(rank + 1))
    if rank == 1:
        one.grad = torch.full((3,), 4.0)
    optimizer = torch.optim.SGD([both, one, neither], lr=1.0)
    distributed.attach_gradient_averaging([optimizer])
    optimizer.step()
    out["grads"] = (both.grad.clone(), one.grad.clone(), neither.grad)
    out["params"] = (both.detach().clone(), one.detach().clone(), neither.detach().clone())

    # reductions over rows of different lengths per rank
    rows = torch.tensor([1.0, 2.0, 3.0]) if rank == 0 else torch.tensor([10.0])
    out["global_mean"] = float(distributed.global_mean(rows))
    out["global_sum"] = float(distributed.global_sum(rows.sum()))
    out["average"] = float(distributed.average(torch.tensor(float(rank))))
    out["gathered"] = distributed.gather_rows(rows, rows.long() * 2)

    # iteration statistics and generator states
    generator = torch.Generator().manual_seed(100 + rank)
    stats, states = distributed.synchronise_iteration(
        {"transitions": float(rank + 1), "loss": float(rank)}, generator, device
    )
    out["stats"], out["states"] = stats, states
    out["own_state"] = generator.get_state()
    out["any_rank"] = distributed.any_rank(rank == 1, device)
    out["no_rank"] = distributed.any_rank(False, device)

    # parameters start from rank 0's
    torch.manual_seed(rank)
    module = torch.nn.Linear(3, 2)
    distributed.broadcast_parameters([module])
    out["broadcast"] = torch.cat([p.detach().reshape(-1) for p in module.parameters()])

    # configuration check, and the batch split
    distributed.check_same_config({"lr": 0.1, "net_arch": (8, 8)}, device)
    try:
        distributed.check_same_config({"lr": 0.1 * (rank + 1)}, device)
    except ValueError as exc:
        out["config_error"] = str(exc)
    out["share"] = distributed.local_share(8, parallel)
    try:
        distributed.local_share(7, parallel)
    except ValueError as exc:
        out["split_error"] = str(exc)
    return out


@pytest.fixture(scope="module")
def primitives(training: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["primitives"] for r in training["ranks"]]


def test_join_reads_torchrun_environment(primitives: list[dict[str, Any]]) -> None:
    assert [r["rank"] for r in primitives] == [0, 1]
    assert all(r["world_size"] == WORLD for r in primitives)


def test_single_process_does_not_join() -> None:
    assert "WORLD_SIZE" not in os.environ
    assert distributed.join(torch.device("cpu")) == (None, torch.device("cpu"))
    assert distributed.world_size() == 1
    x = torch.tensor([1.0, 2.0, 4.0])
    assert distributed.global_mean(x) == x.mean()
    assert distributed.average(x) is x and distributed.global_sum(x) is x
    assert distributed.gather_rows(x)[0] is x
    assert distributed.local_share(7, None) == 7


def test_gradient_average_counts_missing_gradients_as_zero(
    primitives: list[dict[str, Any]],
) -> None:
    for result in primitives:
        both, one, neither = result["grads"]
        assert torch.equal(both, torch.full((3,), 1.5))  # (1 + 2) / 2
        assert torch.equal(one, torch.full((3,), 2.0))  # (0 + 4) / 2
        assert neither is None  # no rank had one: SGD leaves the parameter alone
        assert torch.equal(result["params"][2], torch.zeros(3))
    assert all(
        torch.equal(a, b)
        for a, b in zip(primitives[0]["params"], primitives[1]["params"], strict=True)
    )


def test_reductions_are_over_the_concatenated_rows(primitives: list[dict[str, Any]]) -> None:
    for result in primitives:
        assert result["global_mean"] == 4.0  # (1 + 2 + 3 + 10) / 4, not (2 + 10) / 2
        assert result["global_sum"] == 16.0
        assert result["average"] == 0.5
        rows, doubled = result["gathered"]
        assert torch.equal(rows, torch.tensor([1.0, 2.0, 3.0, 10.0]))
        assert torch.equal(doubled, torch.tensor([2, 4, 6, 20]))


def test_iteration_statistics_and_generator_states(primitives: list[dict[str, Any]]) -> None:
    for result in primitives:
        assert result["stats"] == {"transitions": 3.0, "loss": 0.5}
        assert result["any_rank"] is True and result["no_rank"] is False
    states = primitives[0]["states"]
    assert torch.equal(states, primitives[1]["states"])
    assert [torch.equal(states[r], primitives[r]["own_state"]) for r in range(WORLD)] == [
        True,
        True,
    ]


def test_parameters_start_from_rank_0(primitives: list[dict[str, Any]]) -> None:
    torch.manual_seed(0)
    expected = torch.cat([p.detach().reshape(-1) for p in torch.nn.Linear(3, 2).parameters()])
    for result in primitives:
        assert torch.equal(result["broadcast"], expected)


def test_config_mismatch_is_an_error_on_every_rank(primitives: list[dict[str, Any]]) -> None:
    for result in primitives:
        assert "ranks [1]" in result["config_error"]
        assert "another configuration" in result["config_error"]


def test_indivisible_batch_names_both_numbers(primitives: list[dict[str, Any]]) -> None:
    for result in primitives:
        assert result["share"] == 4
        message = result["split_error"]
        assert "batch_size=7" in message and "world_size=2" in message


def test_resumed_generators_continue_or_get_distinct_streams() -> None:
    saved = torch.stack([torch.Generator().manual_seed(s).get_state() for s in (1, 2)])
    draws = []
    for rank in range(4):
        generator = torch.Generator()
        distributed.resume_generator(generator, saved, rank)
        draws.append(torch.rand(4, generator=generator))
    assert torch.equal(draws[0], torch.rand(4, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(draws[1], torch.rand(4, generator=torch.Generator().manual_seed(2)))
    assert len({tuple(d.tolist()) for d in draws}) == 4
    again = torch.Generator()
    distributed.resume_generator(again, saved, 3)
    assert torch.equal(torch.rand(4, generator=again), draws[3])


# ---------------------------------------------------------------------------- agents
ENV_ID = "gfn_envs/HyperGrid-v0"
GRID = {"ndim": 2, "height": 8}
BATCH = 8


OVERRIDES: dict[str, dict[str, Any]] = {
    "RL-T": {"cg_iters": 2},
    "RL-PPO": {"n_epochs": 2, "minibatch_size": 4},
}
"""RL-PPO takes 2 epochs of 2 minibatches of 4 of the 8 trajectories: with seed 0 the first
minibatch holds one trajectory of rank 0 and three of rank 1, so the comparison covers the shared
permutations and the N/m normalisation of each rank's share (a per-rank mean would differ).

RL-T compares with 2 conjugate-gradient iterations. Its CG solve of (F + λI)x = g amplifies
rounding by about 10³ every two iterations on these small batches (F has rank far below the
parameter count, λ = 10⁻³): with the default 10 iterations, reordering the same 8 trajectories in
one process moves the update by 6e-4 in float32 and by 1e-3 even in float64 (measured), so no
comparison of two summation orders can hold to 1e-6. With 2 iterations that sensitivity is 1.5e-8,
and the comparison still covers every reduction of the step: the gradient, the Fisher-vector
products, the curvature, the surrogate and the line search's KL."""


def build(name: str, **overrides: Any) -> Any:
    """A small agent on the 2 × 8 grid."""
    kwargs: dict[str, Any] = {"net_arch": (16, 16), "batch_size": BATCH, "seed": 0}
    if PRESETS_OF[name][0] is PolicyGradientGFN:
        kwargs["value_net_arch"] = overrides.get("net_arch", (16, 16))
    kwargs.update(OVERRIDES.get(name, {}))
    return make_agent(name, ENV_ID, env_kwargs=GRID, **{**kwargs, **overrides})


def state_tensors(agent: Any) -> dict[str, Tensor]:
    """Every tensor of the agent's networks and optimisers, by name."""
    out: dict[str, Tensor] = {}
    for name, module in agent._modules().items():
        state = module.state_dict()
        if isinstance(module, torch.optim.Optimizer):
            state = {
                f"{i}.{k}": v
                for i, entry in state["state"].items()
                for k, v in entry.items()
                if isinstance(v, Tensor)
            }
        for key, value in state.items():
            if isinstance(value, Tensor):
                out[f"{name}.{key}"] = value.detach().clone()
    return out


class Sampler:
    """Stands in for :func:`gfn_agents.rollout.sample_trajectories` in every module that uses it:
    records each rollout's ``(valid, actions)`` grids, or replays recorded ones (the policy still
    runs on every step, so the losses see the current networks)."""

    def __init__(self, replay: list[tuple[Tensor, Tensor]] | None = None) -> None:
        import gfn_agents.rollout as rollout

        self.rollout, self.original = rollout, rollout.sample_trajectories
        self.replay, self.recorded = replay, []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.replay is None:
            traj = self.original(*args, **kwargs)
            self.recorded.append((traj.valid, traj.to_grid(traj.actions)))
            return traj
        valid, actions = self.replay.pop(0)
        steps = iter(range(len(valid)))
        draw = self.rollout._sample_actions

        def replayed(logits: Tensor, mask: Tensor, *rest: Any) -> Tensor:
            t = next(steps)
            chosen = actions[t][valid[t]]
            assert bool(mask.gather(1, chosen.unsqueeze(1)).all())  # legal where replayed
            return chosen

        self.rollout._sample_actions = replayed
        try:
            return self.original(*args, **kwargs)
        finally:
            self.rollout._sample_actions = draw

    def __enter__(self) -> Sampler:
        for module in list(sys.modules.values()):
            name = getattr(module, "__name__", "")
            if name.startswith("gfn_agents") and module.__dict__.get("sample_trajectories") is (
                self.original
            ):
                module.sample_trajectories = self
        return self

    def __exit__(self, *exc: Any) -> None:
        for module in list(sys.modules.values()):
            if getattr(module, "sample_trajectories", None) is self:
                module.sample_trajectories = self.original


class StopAt(BaseCallback):
    """Stops training after ``iteration`` iterations (it only runs on rank 0)."""

    def __init__(self, iteration: int) -> None:
        super().__init__()
        self.iteration = iteration

    def _on_step(self) -> bool:
        return self.model.iteration < self.iteration


def _training(rank: int, directory: str) -> dict[str, Any]:
    """Everything the 2-rank tests check, in one launch of the ranks (each costs seconds)."""
    out: dict[str, Any] = {"primitives": _primitives(rank)}
    for name in TRAINED_PRESETS:
        agent = build(name)
        out[f"{name}/initial"] = state_tensors(agent)
        with Sampler() as sampler:
            agent.learn(total_trajectories=BATCH)
        out[f"{name}/rollouts"] = sampler.recorded
        out[f"{name}/one"] = state_tensors(agent)
        agent.learn(total_trajectories=3 * BATCH, reset_num_timesteps=False)
        out[f"{name}/four"] = state_tensors(agent)

    # a callback on rank 0 stops every rank; checkpoint, resume, and the uninterrupted run
    straight = build("RL-B").learn(total_trajectories=4 * BATCH)
    out["straight"] = state_tensors(straight)
    first = build("RL-B").learn(total_trajectories=4 * BATCH, callback=StopAt(2))
    out["stopped_at"] = first.iteration
    path = os.path.join(directory, "rlb.zip")
    first.save(path)
    out["saved_generator"] = first.generator.get_state()
    torch.distributed.barrier()  # the file is written by rank 0 only
    resumed = type(first).load(path)
    out["resumed_iteration"] = resumed.iteration
    resumed.learn(total_trajectories=2 * BATCH, reset_num_timesteps=False)
    out["resumed"] = state_tensors(resumed)
    out["counters"] = (resumed.num_trajectories, resumed.num_timesteps, straight.num_timesteps)

    # soft DQN: one replay buffer per rank, averaged gradients
    dqn = SoftDQN(
        "MlpPolicy",
        ENV_ID,
        env_kwargs=GRID,
        net_arch=(16, 16),
        batch_size=BATCH,
        train_batch_size=16,
        learning_starts=BATCH,
        buffer_size=1000,
        seed=0,
    )
    dqn.learn(total_trajectories=4 * BATCH)
    out["dqn"] = state_tensors(dqn)
    out["dqn_buffer"] = (dqn.replay_buffer.size(), dqn.replay_buffer.buffer_size)
    out["dqn_minibatch"] = dqn.local_train_batch_size

    # errors every rank raises
    try:
        build("TB", learning_rate=1e-3 * (rank + 1))
    except ValueError as exc:
        out["config_error"] = str(exc)
    try:
        build("TB", batch_size=7)
    except ValueError as exc:
        out["split_error"] = str(exc)
    return out


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("ranks")
    ranks = run_ranks(_training, str(directory))
    return {"ranks": ranks, "directory": directory}


def _concatenated(ranks: list[dict[str, Any]], name: str) -> list[tuple[Tensor, Tensor]]:
    """The rollouts of both ranks side by side: the single-process batch of the same
    trajectories (rank 0's rows first), padded to the longer rollout."""
    out = []
    for parts in zip(*(r[f"{name}/rollouts"] for r in ranks), strict=True):
        steps = max(len(valid) for valid, _ in parts)
        valid = torch.cat(
            [torch.nn.functional.pad(v, (0, 0, 0, steps - len(v))) for v, _ in parts], 1
        )
        actions = torch.cat(
            [torch.nn.functional.pad(a, (0, 0, 0, steps - len(a))) for _, a in parts], 1
        )
        out.append((valid, actions))
    return out


@pytest.mark.parametrize("name", TRAINED_PRESETS)
def test_update_equals_single_process_update_on_the_same_trajectories(
    training: dict[str, Any], name: str
) -> None:
    """One iteration on 2 ranks of 4 trajectories each equals one iteration of one process on the
    8 trajectories side by side: every parameter and optimiser state to 1e-6."""
    ranks = training["ranks"]
    agent = build(name)
    for key, value in state_tensors(agent).items():
        assert torch.equal(value, ranks[0][f"{name}/initial"][key]), key
    with Sampler(_concatenated(ranks, name)) as sampler:
        agent.learn(total_trajectories=BATCH)
    assert sampler.replay == []
    expected = state_tensors(agent)
    moved = max(
        float((expected[k] - ranks[0][f"{name}/initial"][k]).abs().max())
        for k in expected
        if k in ranks[0][f"{name}/initial"]
    )
    assert moved > 1e-4  # the iteration changed the parameters
    for result in ranks:
        assert result[f"{name}/one"].keys() == expected.keys()
        for key, value in expected.items():
            torch.testing.assert_close(
                result[f"{name}/one"][key], value, rtol=0, atol=1e-6, msg=key
            )


@pytest.mark.parametrize("name", TRAINED_PRESETS)
def test_ranks_stay_bitwise_identical(training: dict[str, Any], name: str) -> None:
    first, second = (r[f"{name}/four"] for r in training["ranks"])
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def test_stop_checkpoint_and_resume_equal_the_uninterrupted_run(training: dict[str, Any]) -> None:
    for result in training["ranks"]:
        assert result["stopped_at"] == 2 and result["resumed_iteration"] == 2
        for key, value in result["straight"].items():
            assert torch.equal(result["resumed"][key], value), key
        resumed_trajectories, resumed_steps, straight_steps = result["counters"]
        assert resumed_trajectories == 4 * BATCH and resumed_steps == straight_steps


def test_agent_errors_on_every_rank(training: dict[str, Any]) -> None:
    for result in training["ranks"]:
        assert "ranks [1]" in result["config_error"]
        assert "batch_size=7" in result["split_error"] and "world_size=2" in result["split_error"]


def test_soft_dqn_keeps_a_buffer_per_rank_and_identical_networks(
    training: dict[str, Any],
) -> None:
    first, second = training["ranks"]
    assert first["dqn"].keys() == second["dqn"].keys()
    for key in first["dqn"]:
        assert torch.equal(first["dqn"][key], second["dqn"][key]), key
    # each rank stores its own transitions in its half of the replay memory
    assert first["dqn_buffer"][1] == second["dqn_buffer"][1] == 500
    assert first["dqn_minibatch"] == second["dqn_minibatch"] == 8
    assert first["dqn_buffer"][0] > 0 and second["dqn_buffer"][0] > 0


def test_checkpoint_of_two_ranks_resumes_in_one_process(training: dict[str, Any]) -> None:
    """A checkpoint records the world size and both generators; one process continues from it
    with rank 0's generator (statistically, not bitwise, the 2-rank run)."""
    path = training["directory"] / "rlb.zip"
    with zipfile.ZipFile(path) as archive:
        assert json.loads(archive.read("metadata.json"))["world_size"] == WORLD
    agent = GFlowNetAlgorithm.load(path)
    assert agent.parallel is None and agent.local_batch_size == BATCH
    assert torch.equal(agent.generator.get_state(), training["ranks"][0]["saved_generator"])
    agent.learn(total_trajectories=BATCH, reset_num_timesteps=False)
    assert agent.num_trajectories == 3 * BATCH


# ---------------------------------------------------------------------------- convergence
TV_THRESHOLD, TV_BUDGET = 0.15, 4000
CONVERGE: dict[str, Any] = {"net_arch": (32, 32), "batch_size": 16, "learning_rate": 5e-3}


def _converge(rank: int) -> dict[str, tuple[int, float]]:
    out = {}
    for name in TRAINED_PRESETS:
        agent = build(name, **CONVERGE)
        callback = ExactEvalCallback(eval_freq=5, tv_threshold=TV_THRESHOLD)
        agent.learn(total_trajectories=TV_BUDGET, callback=callback)
        out[name] = (agent.num_trajectories, callback.history[-1]["tv"] if callback.history else -1)
    return out


@pytest.fixture(scope="module")
def converged() -> list[dict[str, tuple[int, float]]]:
    return run_ranks(_converge, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINED_PRESETS)
def test_two_ranks_reach_the_tv_threshold_of_one_process(
    converged: list[dict[str, tuple[int, float]]], name: str
) -> None:
    """On 2 × 8 (small nets, 16 trajectories per iteration, learning rate 5e-3) one process and
    2 ranks both reach exact TV ≤ 0.15 within 4,000 trajectories (one process needs 640 to 1,920
    with seed 0). Both ranks stop at the same iteration, when rank 0's evaluation says so."""
    single = build(name, **CONVERGE)
    callback = ExactEvalCallback(eval_freq=5, tv_threshold=TV_THRESHOLD)
    single.learn(total_trajectories=TV_BUDGET, callback=callback)
    assert callback.history[-1]["tv"] <= TV_THRESHOLD < callback.history[0]["tv"]
    trajectories, tv = converged[0][name]
    assert tv <= TV_THRESHOLD and trajectories <= TV_BUDGET
    assert converged[1][name][0] == trajectories  # rank 1 stopped with rank 0


# ---------------------------------------------------------------------------- gfn-train
def gfn_train(*args: str) -> list[str]:
    """The command line ``torchrun --standalone --nproc_per_node 2 gfn-train ARGS``."""
    script = os.path.join(os.path.dirname(sys.executable), "gfn-train")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc_per_node", str(WORLD), script, *args]


def test_gfn_train_under_torchrun_stops_on_sigterm_and_resumes(tmp_path: Any) -> None:
    """SIGTERM to torchrun (what ``kill`` or a scheduler sends) reaches every rank: the current
    iteration finishes, rank 0 writes the checkpoint and says so once; ``--resume`` under torchrun
    then finishes the run, printing the metrics once."""
    path = tmp_path / "tb.zip"
    common = ["--env-kwargs", "ndim=2", "height=8", "--batch-size", "8", "--net-arch", "16,16"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    run = subprocess.Popen(
        gfn_train("TB", "HyperGrid-v0", *common, "--trajectories", "10000000")
        + ["--save", str(path), "--save-freq", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not path.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.2)
        assert path.exists(), "no periodic checkpoint within 120 s"
        run.send_signal(signal.SIGTERM)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert out.count("world_size=2 backend=gloo") == 1
    stopped = [line for line in err.splitlines() if line.startswith("gfn-train: stopped by")]
    assert len(stopped) == 1 and "SIGTERM" in stopped[0] and str(path) in stopped[0]
    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read("metadata.json"))
    assert metadata["world_size"] == WORLD and metadata["iteration"] >= 5
    done = metadata["num_trajectories"]
    assert f"after {done} trajectories" in stopped[0]

    finish = subprocess.run(
        gfn_train("--resume", str(path), "--trajectories", str(done + 16), "--save", str(path)),
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert finish.returncode == 0, finish.stderr
    assert finish.stdout.count("world_size=2 backend=gloo") == 1
    assert finish.stdout.count(f"TrajectoryBalance on gfn_envs/HyperGrid-v0: {done + 16}") == 1
    assert finish.stdout.count("tv=") == 1
    assert GFlowNetAlgorithm.load(path).num_trajectories == done + 16
