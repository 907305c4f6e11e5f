"""Data-parallel training on 2 gloo ranks started inside the tests.

:func:`run_ranks` starts the ranks as torchrun would (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT`` in each process's environment), runs a module-level function in
each and returns what each returned; an exception in a rank is re-raised here with its traceback,
and a rank that does not finish within the timeout is killed, so nothing hangs.
"""

from __future__ import annotations

import io
import os
import queue
import socket
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

from gfn_agents import distributed

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
def primitives() -> list[dict[str, Any]]:
    return run_ranks(_primitives)


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
