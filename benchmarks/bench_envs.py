"""Speed of the gfn_envs HyperGrid core, its Gymnasium adapters and the exact evaluator.

Prints medians [min–max] over ``--repeats`` runs, after one warm-up run, with the torch thread count:

1. **Batched stepping**: states stepped per second by ``GFlowNetVectorEnv.step`` (``tensors=True``,
   autoreset disabled) from reset until every trajectory has exited, on 2x64 and 4x16 with batches of
   16, 128 and 1024. Two action regimes: uniform over the legal actions (about 3 and 5 steps per
   trajectory) and exit with probability 0.02 (about 45 and 35 steps). A state is counted when a
   live (not yet exited) trajectory takes a step. "loop" includes the action sampling, "env" is the
   ``step`` call alone, and "core" is the batched task itself (``task.step_where`` on the live rows plus
   ``task.forward_mask``: the work of torchgfn's ``_step`` plus the next masks).
2. **The single-object env** from ``gymnasium.make`` (with Gymnasium's default wrappers): steps/s
   under a uniform masked policy.
3. **Exact evaluation** on 2x64 and 2x256 with a 4x256 MLP forward policy: one batched forward pass
   over all states alone, and the whole ``exact_distribution`` plus tv/l1/kl/jsd; the ratio of the
   two is the evaluator's overhead on top of the policy.

When ``import gfn`` works (torchgfn, the optional extra ``anchor``; it needs numpy < 2, so use a
separate venv), the same stepping loop runs on torchgfn's ``HyperGrid._step`` in the same process
and the ratios are printed. torchgfn 2.4.x has no exact terminating distribution, so only its
stepping is compared.

Usage: ``python benchmarks/bench_envs.py [--threads 1] [--repeats 5] [--quick]``
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from gfn_envs import GFlowNetVectorEnv, exact_distribution, metrics
from gfn_envs.exact import dag_structure, distribution_from_probs, policy_probs
from gfn_envs.tasks.hypergrid import HyperGrid

GRIDS = ((2, 64), (4, 16))
BATCHES = (16, 128, 1024)
REGIMES = (("uniform", None), ("p_exit=0.02", 0.02))


def sample_actions(
    mask: torch.Tensor, done: torch.Tensor, p_exit: float | None, generator: torch.Generator
) -> torch.Tensor:
    """Random legal actions, exit last; finished rows get exit (ignored by both envs).

    ``p_exit=None``: uniform over the legal actions. Otherwise exit with probability ``p_exit``
    and a uniform legal move otherwise (exit for sure where no move is legal).
    """
    mask = mask.clone()
    mask[done] = False
    mask[done, -1] = True
    if p_exit is None:
        probs = mask.float()
    else:
        moves = mask[:, :-1].float()
        n_moves = moves.sum(1, keepdim=True)
        probs = torch.cat(
            [moves * ((1 - p_exit) / n_moves.clamp(min=1)), torch.full_like(n_moves, p_exit)], 1
        )
        probs[n_moves.squeeze(1) == 0, -1] = 1.0
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def run_ours(
    ndim: int, height: int, batch: int, p_exit: float | None, seed: int
) -> tuple[int, float, float, float]:
    """One batch of trajectories through the native vector env: (states, loop s, env s, env s).

    Our ``step`` already returns the next masks, observations and rewards, so the "equivalent
    work" time equals the env time.
    """
    env = GFlowNetVectorEnv(
        batch, task=HyperGrid, ndim=ndim, height=height, autoreset_mode="disabled", tensors=True
    )
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    _, info = env.reset(seed=seed)
    done = torch.zeros(batch, dtype=torch.bool)
    n_states, env_time = 0, 0.0
    while not bool(done.all()):
        actions = sample_actions(info["action_mask"], done, p_exit, generator)
        n_states += int((~done).sum())
        t = time.perf_counter()
        _, _, done, _, info = env.step(actions)
        env_time += time.perf_counter() - t
    return n_states, time.perf_counter() - start, env_time, env_time


def run_core(
    ndim: int, height: int, batch: int, p_exit: float | None, seed: int
) -> tuple[int, float, float, float]:
    """The same loop on the batched task itself: (states, loop s, core s, core s).

    The core step is the work of torchgfn's ``_step`` plus the next forward masks: move the live
    states (``task.step_where``), mark the exits, and compute ``task.forward_mask`` of the new
    states.
    """
    task = HyperGrid(ndim=ndim, height=height)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    states = task.s0(batch)
    mask = task.forward_mask(states)
    done = torch.zeros(batch, dtype=torch.bool)
    n_states, core_time = 0, 0.0
    while not bool(done.all()):
        actions = sample_actions(mask, done, p_exit, generator)
        n_states += int((~done).sum())
        t = time.perf_counter()
        exits = actions == task.exit_action
        move = ~(done | exits)
        states = task.step_where(states, actions, move)
        done = done | exits
        mask = task.forward_mask(states)
        core_time += time.perf_counter() - t
    return n_states, time.perf_counter() - start, core_time, core_time


def run_torchgfn(
    ndim: int, height: int, batch: int, p_exit: float | None, seed: int
) -> tuple[int, float, float, float]:
    """The same loop on torchgfn's HyperGrid: (states, loop s, ``_step`` s, equivalent s).

    ``_step`` is what torchgfn's sampler calls and what the torchgfn 2.4.1 reference runs time.
    Its masks are computed lazily and its K-hot observations by a separate preprocessor, so
    "equivalent" adds the ``forward_masks`` access and the ``KHotPreprocessor`` call on the live
    states, the work our ``step`` does too.
    """
    from gfn.gym import HyperGrid as TorchgfnHyperGrid
    from gfn.preprocessors import KHotPreprocessor

    env = TorchgfnHyperGrid(ndim=ndim, height=height, device="cpu")
    preprocessor = KHotPreprocessor(height=height, ndim=ndim)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    states = env.reset(batch_shape=(batch,))
    preprocessor(states)
    done = torch.zeros(batch, dtype=torch.bool)
    n_states, step_time, full_time = 0, 0.0, 0.0
    exit_action = env.n_actions - 1
    while not bool(done.all()):
        actions = sample_actions(states.forward_masks, done, p_exit, generator)
        n_states += int((~done).sum())
        t = time.perf_counter()
        states = env._step(states, env.actions_from_tensor(actions.unsqueeze(1)))
        t_step = time.perf_counter()
        done = done | (actions == exit_action)
        states.forward_masks  # noqa: B018 (computes and caches the masks)
        if not bool(done.all()):
            preprocessor(states[~done])
        t_end = time.perf_counter()
        step_time += t_step - t
        full_time += t_end - t
    return n_states, time.perf_counter() - start, step_time, full_time


def summarise(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} [{min(values):.0f}–{max(values):.0f}]"


def bench_stepping(repeats: int, batches: tuple[int, ...], has_torchgfn: bool) -> None:
    print("\n## 1. Batched stepping: thousands of states/s, median [min–max]")
    header = "| grid | batch | regime | ours loop | ours env step | ours core step |"
    if has_torchgfn:
        header += (
            " torchgfn loop | torchgfn `_step` | torchgfn `_step`+masks+K-hot |"
            " env vs `_step` | env vs equivalent | core vs `_step` |"
        )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    runners: list[tuple[str, Callable[..., tuple[int, float, float, float]]]] = [
        ("ours", run_ours),
        ("core", run_core),
    ]
    if has_torchgfn:
        runners.append(("torchgfn", run_torchgfn))
    for regime, p_exit in REGIMES:
        for ndim, height in GRIDS:
            for batch in batches:
                rates: dict[str, list[list[float]]] = {name: [[], [], []] for name, _ in runners}
                for _, runner in runners:
                    runner(ndim, height, batch, p_exit, seed=999)
                # Interleave the libraries so that machine noise hits both alike.
                for r in range(repeats):
                    for name, runner in runners:
                        n, *times = runner(ndim, height, batch, p_exit, seed=r)
                        for column, seconds in zip(rates[name], times, strict=True):
                            column.append(n / seconds / 1e3)
                ours, core = rates["ours"], rates["core"]
                row = (
                    f"| {ndim}x{height} | {batch} | {regime} | {summarise(ours[0])} |"
                    f" {summarise(ours[1])} | {summarise(core[1])} |"
                )
                if has_torchgfn:
                    theirs = rates["torchgfn"]
                    med = statistics.median
                    row += (
                        f" {summarise(theirs[0])} | {summarise(theirs[1])} | {summarise(theirs[2])} |"
                        f" {med(ours[1]) / med(theirs[1]):.2f}x | {med(ours[2]) / med(theirs[2]):.2f}x |"
                        f" {med(core[1]) / med(theirs[1]):.2f}x |"
                    )
                print(row, flush=True)


def bench_single_env(repeats: int, n_steps: int) -> None:
    print("\n## 2. Single-object env (gymnasium.make, default wrappers): steps/s")
    print("| grid | steps/s median [min–max] |")
    print("|---|---|")
    for ndim, height in GRIDS:
        env = gym.make("gfn_envs/HyperGrid-v0", ndim=ndim, height=height)
        rng = np.random.default_rng(0)
        rates = []
        for r in range(repeats + 1):
            _, info = env.reset(seed=r)
            start = time.perf_counter()
            for _ in range(n_steps):
                legal = np.flatnonzero(info["action_mask"])
                _, _, terminated, _, info = env.step(int(rng.choice(legal)))
                if terminated:
                    _, info = env.reset()
            if r > 0:
                rates.append(n_steps / (time.perf_counter() - start))
        print(f"| {ndim}x{height} | {summarise(rates)} |", flush=True)


def mlp_policy(
    obs_dim: int, n_actions: int
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """An untrained 4x256 MLP forward policy (the paper's architecture), returning logits."""
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    width = obs_dim
    for _ in range(4):
        layers += [torch.nn.Linear(width, 256), torch.nn.LeakyReLU()]
        width = 256
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, n_actions))

    def policy(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return net(obs)  # logits; the evaluator normalises them over the legal actions

    return policy


def all_metrics(p: torch.Tensor, p_star: torch.Tensor) -> dict[str, float]:
    """tv, l1, kl(P* ‖ p) and jsd of an exact distribution."""
    return {
        "tv": metrics.tv(p, p_star),
        "l1": metrics.l1(p, p_star),
        "kl": metrics.kl(p_star, p),
        "jsd": metrics.jsd(p, p_star),
    }


def bench_exact(repeats: int, grids: tuple[tuple[int, int], ...]) -> None:
    """Forward pass alone, the whole evaluation, and the DP + metrics alone (given P_F).

    The overhead is (DP + metrics alone) / (forward pass): measuring it as a difference of two
    totals drowns it in the noise of the forward pass on a shared machine.
    """
    print("\n## 3. Exact evaluation with a 4x256 MLP P_F: seconds, median [min–max]")
    print(
        "| grid | states | DAG build (once) | policy forward pass | exact_distribution + metrics |"
        " DP + metrics alone | overhead |"
    )
    print("|---|---|---|---|---|---|---|")
    for ndim, height in grids:
        env = gym.make("gfn_envs/HyperGrid-v0", ndim=ndim, height=height, R0=0.01)
        task = env.unwrapped.task
        start = time.perf_counter()
        dag = dag_structure(task)
        p_star = env.unwrapped.true_distribution()
        build = time.perf_counter() - start
        policy = mlp_policy(task.obs_dim, task.n_actions)
        probs = policy_probs(task, policy)

        timings: dict[str, list[float]] = {"forward": [], "total": [], "dp": []}
        for r in range(repeats + 1):
            start = time.perf_counter()
            with torch.no_grad():
                policy(dag.obs, dag.mask)
            t_forward = time.perf_counter()
            all_metrics(exact_distribution(env, policy), p_star)
            t_total = time.perf_counter()
            all_metrics(distribution_from_probs(task, probs), p_star)
            t_dp = time.perf_counter()
            if r > 0:
                timings["forward"].append(t_forward - start)
                timings["total"].append(t_total - t_forward)
                timings["dp"].append(t_dp - t_total)
        cells = " | ".join(
            f"{statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}]" for v in timings.values()
        )
        overhead = statistics.median(timings["dp"]) / statistics.median(timings["forward"])
        print(
            f"| {ndim}x{height} | {len(dag.states)} | {build:.3f} | {cells} | {100 * overhead:.1f} % |",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per cell (default 5)")
    parser.add_argument("--quick", action="store_true", help="batch 1024 only, 2x64 exact only")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        from importlib.metadata import version

        import gfn  # noqa: F401

        has_torchgfn, anchor = True, f"torchgfn {version('torchgfn')}"
    except ImportError:
        has_torchgfn, anchor = False, "torchgfn is not installed (extra 'anchor'): no ratios"
    print(
        f"# gfn_envs benchmark: torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"numpy {np.__version__}, {platform.processor() or platform.machine()}, "
        f"{args.repeats} repeats; {anchor}"
    )
    bench_stepping(args.repeats, (1024,) if args.quick else BATCHES, has_torchgfn)
    bench_single_env(args.repeats, n_steps=2000)
    bench_exact(args.repeats, ((2, 64),) if args.quick else ((2, 64), (2, 256)))
    if has_torchgfn:
        print(
            "\ntorchgfn 2.4.x has no exact terminating distribution (only the sampled "
            "env.validate), so the exact evaluator is not compared against it."
        )


if __name__ == "__main__":
    main()
