"""Data-parallel scaling: transitions/s with 1 and 2 ranks, and what the communication costs.

Configuration: the paper's HyperGrid 2 × 64 (R0 = 0.01), ``--batch`` trajectories per iteration in
all (default 128, the paper's; half per rank on 2 ranks), P_F and P_B MLPs 4 × 256, value networks
2 × 256, one torch thread per rank. Each preset first trains ``--warmup`` iterations in this
process (trajectories grow from about 3 to 20–60 steps) and is saved; every measurement then loads
that checkpoint, so 1 and 2 ranks time the same policy. A measurement is one ``torchrun
--standalone --nproc_per_node N`` launch that runs one untimed iteration and then ``--iters``
timed ones; launches for 1 and 2 ranks alternate, ``--repeats`` times, so a changing machine load
hits both alike.

Printed per preset, each a median [min–max] over the repeats:

* transitions/s (forward actions, exit included, over all ranks) for 1 rank (a plain single
  process: torchrun with one process starts no process group) and for 2 ranks;
* the scaling efficiency rate(2) / (2 · rate(1)) of each repeat (target ≥ 0.85 on a 2-core
  machine, where each rank has a core);
* the same efficiency from CPU time (the busiest rank's process time) instead of wall time: a
  rank waiting for the other or for a core burns none, so this is close to what the ranks reach
  when each has a core of its own, also on a machine shared with other work;
* the ceiling: rate(B/2) / rate(B) in CPU time in one process, without any communication, i.e.
  how much of an iteration's work does not shrink when a rank's share of the batch halves;
* on 2 ranks the share of the iteration spent in the gradient all-reduces (every optimiser step)
  and in the per-iteration synchronisation (statistics, generator states, the stop flag),
  measured inside the ranks; both include waiting for the slower rank (target: all-reduce
  < 10 %);
* where the CPU time goes: per transition, summed over the ranks, the rollouts, the backward
  passes, the gradient all-reduces, the per-iteration synchronisation and the rest (losses,
  optimiser steps, Python), for 1 and 2 ranks.

``--compare-sync`` times one optimiser step of P_F and P_B (4 × 256, a TB-like loss over
``--rows`` rows) on 2 ranks three ways: no communication, the flat all-reduce gfn-gym uses
(:func:`gfn_agents.distributed.average_gradients`), and ``DistributedDataParallel``, whose
bucketed all-reduce overlaps the backward pass.

``--profile`` runs ``cProfile`` in both ranks of one 2-rank launch of the first preset and prints
each rank's top functions by cumulative time; it also puts a barrier before every collective
and reports the time spent waiting there for the slower rank (``wait_share``) apart from the
communication itself.

Usage::

    .venv/bin/python benchmarks/bench_distributed.py                 # TB and RL-B, 5 repeats
    .venv/bin/python benchmarks/bench_distributed.py --batch 512     # larger shares per rank
    .venv/bin/python benchmarks/bench_distributed.py --quick         # 2 repeats, short warm-up
    .venv/bin/python benchmarks/bench_distributed.py --compare-sync
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

GRID = {"ndim": 2, "height": 64, "R0": 0.01}
ENV_ID = "gfn_envs/HyperGrid-v0"


PARTS = ("rollout", "backward", "allreduce", "sync")


def _timed(owner: Any, name: str, totals: dict[str, float], key: str, split: bool) -> None:
    """Wrap ``owner.name`` so that its wall time accumulates in ``totals[key]`` and its CPU time in
    ``totals["cpu_" + key]``. With ``split`` a barrier first waits for the slower rank, and that
    wait goes to ``totals["wait"]``."""
    inner: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        if split and torch.distributed.is_initialized():
            torch.distributed.barrier()
            totals["wait"] += time.perf_counter() - start
            start = time.perf_counter()
        cpu = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start
            totals["cpu_" + key] += time.process_time() - cpu

    setattr(owner, name, wrapper)


def worker(args: argparse.Namespace) -> None:
    """One rank of a measurement (started by torchrun); rank 0 prints one JSON line."""
    torch.set_num_threads(1)
    from gfn_agents import GFlowNetAlgorithm, distributed

    totals = dict.fromkeys([*PARTS, *("cpu_" + p for p in PARTS), "wait"], 0.0)
    split = args.profile  # profiling also splits waiting for the other rank from communicating
    _timed(distributed, "average_gradients", totals, "allreduce", split)
    _timed(distributed, "synchronise_iteration", totals, "sync", split)
    _timed(distributed, "any_rank", totals, "sync", split)
    _timed(torch.Tensor, "backward", totals, "backward", False)
    rollout = sys.modules["gfn_agents.rollout"].sample_trajectories
    for module in list(sys.modules.values()):  # every agent module that samples
        if (
            module.__name__.startswith("gfn_agents")
            and getattr(module, "sample_trajectories", None) is rollout
        ):
            _timed(module, "sample_trajectories", totals, "rollout", False)
    agent = GFlowNetAlgorithm.load(args.checkpoint, batch_size=args.batch)
    agent.learn(total_trajectories=args.batch, reset_num_timesteps=False)  # untimed
    profiler = cProfile.Profile() if args.profile else None
    for key in totals:
        totals[key] = 0.0
    steps, start, cpu = agent.num_timesteps, time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    agent.learn(total_trajectories=args.iters * args.batch, reset_num_timesteps=False)
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - start
    cpu_seconds = torch.tensor([time.process_time() - cpu], dtype=torch.float64)
    # CPU time per part summed over the ranks: ideal scaling keeps it per transition
    cpu_parts = torch.tensor([totals["cpu_" + p] for p in PARTS] + [float(cpu_seconds)])
    if agent.parallel is not None:  # the busiest rank's CPU time
        torch.distributed.all_reduce(cpu_seconds, op=torch.distributed.ReduceOp.MAX)
        torch.distributed.all_reduce(cpu_parts)
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        rank = 0 if agent.parallel is None else agent.parallel.rank
        print(f"---- rank {rank}\n{out.getvalue()}", flush=True)
    if agent.is_main:
        record = {
            "transitions": agent.num_timesteps - steps,
            "seconds": seconds,
            "cpu_seconds": float(cpu_seconds),
            "allreduce_share": totals["allreduce"] / seconds,
            "sync_share": totals["sync"] / seconds,
            "wait_share": totals["wait"] / seconds,
            "cpu_us": dict(zip([*PARTS, "total"], cpu_parts.tolist(), strict=True)),
        }
        print("RESULT " + json.dumps(record), flush=True)


def launch(ranks: int, extra: list[str], timeout: float = 1800) -> str:
    """Run this script as a torchrun job of ``ranks`` processes; its stdout."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(ranks),
        os.path.abspath(__file__),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def measure(ranks: int, checkpoint: str, args: argparse.Namespace) -> dict[str, float]:
    extra = ["--checkpoint", checkpoint, "--iters", str(args.iters), "--batch", str(args.batch)]
    stdout = launch(ranks, ["--worker", *extra])
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def warm_checkpoint(preset: str, iterations: int, directory: str) -> str:
    """Train ``preset`` for ``iterations`` iterations in this process; the checkpoint's path."""
    from gfn_agents import make_agent

    agent = make_agent(preset, ENV_ID, env_kwargs=GRID, batch_size=128, seed=0)
    agent.learn(total_trajectories=iterations * 128)
    path = os.path.join(directory, f"{preset}.zip")
    agent.save(path)
    return path


def ceiling(checkpoint: str, args: argparse.Namespace) -> tuple[float, str]:
    """rate(B/2) / rate(B) in CPU time, in this process and without communication: how much of
    the work of an iteration does not shrink with the batch (per-step costs), the efficiency two
    ranks would reach if communicating were free. Also the rollout steps per iteration (the
    longest trajectory) and the mean trajectory length at B/2 and B, as a line of text."""
    from gfn_agents import GFlowNetAlgorithm
    from gfn_agents.rollout import sample_trajectories

    rates: dict[int, list[float]] = {args.batch: [], args.batch // 2: []}
    agents = {b: GFlowNetAlgorithm.load(checkpoint, batch_size=b) for b in rates}
    for _ in range(3):
        for batch, agent in agents.items():
            steps, cpu = agent.num_timesteps, time.process_time()
            agent.learn(total_trajectories=args.iters * batch, reset_num_timesteps=False)
            rates[batch].append((agent.num_timesteps - steps) / (time.process_time() - cpu))
    shapes = []
    for batch, agent in agents.items():
        rollouts = [
            sample_trajectories(agent.forward_env, agent.networks.forward_outputs, agent.generator)
            for _ in range(5)
        ]
        steps = statistics.median(len(t.valid) for t in rollouts)
        length = statistics.mean(float(t.lengths.float().mean()) for t in rollouts)
        shapes.append(f"{batch} trajectories: {steps:.0f} steps, mean length {length:.1f}")
    ratio = statistics.median(rates[args.batch // 2]) / statistics.median(rates[args.batch])
    return ratio, "; ".join(shapes)


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}–{fmt.format(max(values))}]"


def scaling(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    load = os.getloadavg()
    print(
        f"HyperGrid 2x64, {args.batch} trajectories/iteration in all, nets 4x256 (values 2x256), "
        f"1 thread per rank, torch {torch.__version__}, {os.cpu_count()} cores; "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as directory:
        checkpoints = {p: warm_checkpoint(p, args.warmup, directory) for p in args.presets}
        rows: dict[str, dict[int, list[dict[str, float]]]] = {
            p: {1: [], 2: []} for p in args.presets
        }
        ceilings: dict[str, list[float]] = {p: [] for p in args.presets}
        shapes: dict[str, str] = {}
        for repeat in range(args.repeats):
            order = (1, 2) if repeat % 2 == 0 else (2, 1)
            for preset in args.presets:
                for ranks in order:
                    rows[preset][ranks].append(measure(ranks, checkpoints[preset], args))
                ratio, shapes[preset] = ceiling(checkpoints[preset], args)
                ceilings[preset].append(ratio)
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        "| preset | 1 rank transitions/s | 2 ranks transitions/s | efficiency rate(2)/(2·rate(1)) "
        "| CPU-time efficiency | ceiling without communication | all-reduce share (2 ranks) "
        "| other sync share (2 ranks) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for preset, by_ranks in rows.items():
        rate = {n: [r["transitions"] / r["seconds"] for r in by_ranks[n]] for n in (1, 2)}
        efficiency = [r2 / (2 * r1) for r1, r2 in zip(rate[1], rate[2], strict=True)]
        cpu_rate = {n: [r["transitions"] / r["cpu_seconds"] for r in by_ranks[n]] for n in (1, 2)}
        cpu_efficiency = [r2 / (2 * r1) for r1, r2 in zip(cpu_rate[1], cpu_rate[2], strict=True)]
        allreduce = [100 * r["allreduce_share"] for r in by_ranks[2]]
        sync = [100 * r["sync_share"] for r in by_ranks[2]]
        print(
            f"| {preset} | {spread(rate[1])} | {spread(rate[2])} | "
            f"{spread(efficiency, '{:.2f}')} | {spread(cpu_efficiency, '{:.2f}')} | "
            f"{spread(ceilings[preset], '{:.2f}')} | "
            f"{spread(allreduce, '{:.1f}')} % | "
            f"{spread(sync, '{:.1f}')} % |"
        )
    print(
        "\nCPU µs per transition, summed over the ranks (ideal scaling keeps each part), median:\n"
        "| preset | ranks | rollout | backward pass | gradient all-reduce | iteration sync | rest "
        "| total |\n|---|---|---|---|---|---|---|---|"
    )
    for preset, by_ranks in rows.items():
        for n in (1, 2):
            per = {
                k: statistics.median(1e6 * r["cpu_us"][k] / r["transitions"] for r in by_ranks[n])
                for k in (*PARTS, "total")
            }
            rest = per["total"] - sum(per[k] for k in PARTS)
            cells = " | ".join(f"{per[k]:.1f}" for k in PARTS)
            print(f"| {preset} | {n} | {cells} | {rest:.1f} | {per['total']:.1f} |")
    print("\nRollout steps per iteration (the longest trajectory) and mean trajectory length:")
    for preset, text in shapes.items():
        print(f"  {preset}: {text}")


def sync_worker(args: argparse.Namespace) -> None:
    """One rank of ``--compare-sync``: times optimiser steps without sync, flat and DDP."""
    torch.set_num_threads(1)
    from torch.nn.parallel import DistributedDataParallel

    from gfn_agents import distributed
    from gfn_agents.policies import PolicyNetworks
    from gfn_envs.tasks.hypergrid import HyperGrid

    parallel, _ = distributed.join(torch.device("cpu"))
    assert parallel is not None
    task = HyperGrid(ndim=2, height=64)
    torch.manual_seed(0)
    networks = PolicyNetworks.for_task(task, (256, 256, 256, 256), learn_backward=True)
    states = torch.randint(0, 64, (args.rows, 2), generator=torch.Generator().manual_seed(1))
    obs = task.encode(states)

    class Both(torch.nn.Module):
        """P_F and P_B (log Z left out: DDP wants every parameter used by each forward)."""

        def __init__(self) -> None:
            super().__init__()
            self.pf, self.pb = networks.pf, networks.pb

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pf(x).logsumexp(1) - self.pb(x).logsumexp(1)

    model = Both()
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)

    def step(module: torch.nn.Module, flat: bool) -> None:
        optimizer.zero_grad()
        module(obs).pow(2).mean().backward()
        if flat:
            distributed.average_gradients(model.parameters())
        optimizer.step()

    modes = {
        "no communication": lambda: step(model, False),
        "flat all-reduce": lambda: step(model, True),
        "DDP": lambda: step(ddp, False),
    }
    times: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name, run in modes.items():
            run()  # warm
            torch.distributed.barrier()
            start = time.perf_counter()
            for _ in range(args.iters):
                run()
            torch.distributed.barrier()
            times[name].append(1000 * (time.perf_counter() - start) / args.iters)
    if parallel.is_main:
        params = sum(p.numel() for p in model.parameters())
        print(f"{params} parameters, {args.rows} rows, ms per optimiser step, median [min–max]:")
        base = statistics.median(times["no communication"])
        for name, values in times.items():
            extra = statistics.median(values) - base
            print(
                f"  {name:18s} {spread(values, '{:.2f}')}  (+{extra:.2f} ms over no communication)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["TB", "RL-B"])
    parser.add_argument("--warmup", type=int, default=100, help="iterations before the checkpoint")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per launch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128, help="trajectories per iteration")
    parser.add_argument("--rows", type=int, default=4096, help="rows per step (--compare-sync)")
    parser.add_argument("--quick", action="store_true", help="2 repeats, 30 warm-up iterations")
    parser.add_argument("--compare-sync", action="store_true")
    parser.add_argument("--profile", action="store_true", help="profile one 2-rank launch")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sync-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup = 2, 30
    if args.worker:
        worker(args)
    elif args.sync_worker:
        sync_worker(args)
    elif args.compare_sync:
        extra = ["--sync-worker", "--rows", str(args.rows), "--iters", str(args.iters)]
        print(launch(2, [*extra, "--repeats", str(args.repeats)]), end="")
    elif args.profile:
        with tempfile.TemporaryDirectory() as directory:
            path = warm_checkpoint(args.presets[0], args.warmup, directory)
            extra = ["--worker", "--profile", "--checkpoint", path, "--iters", str(args.iters)]
            extra += ["--batch", str(args.batch)]
            print(launch(2, extra), end="")
            print(launch(1, extra), end="")
    else:
        scaling(args)


if __name__ == "__main__":
    main()
