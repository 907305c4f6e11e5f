"""BayesNet speed: stepping throughput, scoring, the exact distribution on d = 5, training iterations.

Prints medians over several repeats, the torch thread count, and ratios. Run with
``.venv/bin/python benchmarks/bench_bayesnet.py [--threads N] [--repeats R]``.

* stepping: forward_mask + step (one forward transition) and backward_mask + backward_step on a
  fixed batch of mid-trajectory states, for d ∈ {5, 20} and B ∈ {128, 1024}; transitions/s;
* log_reward with a warm local-score cache (graphs/s), and the cold cost of first-time scoring;
* exact distribution on d = 5 (29,281 DAGs): enumeration, the DAG-of-DAGs edge list, and one DP of a
  policy given its action probabilities, plus one full ``exact_distribution`` of a uniform policy;
* seconds per training iteration of RL-B (batch 128) on d = 5 and d = 20, when gfn_agents is there.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from gfn_envs.exact import dag_structure, distribution_from_probs, exact_distribution
from gfn_envs.tasks.bayesnet import BayesNet


def median_seconds(fn: Callable[[], object], repeats: int, inner: int = 1) -> float:
    """Median over ``repeats`` of the mean wall time of ``inner`` calls."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def mid_trajectory_states(task: BayesNet, batch: int, steps: int) -> torch.Tensor:
    """States after ``steps`` uniform edge additions from the empty graph (fixed seed)."""
    generator = torch.Generator().manual_seed(0)
    states = task.s0(batch)
    for _ in range(steps):
        moves = task.forward_mask(states)[:, : task.exit_action].float()
        actions = torch.multinomial(moves, 1, generator=generator).squeeze(1)
        states = task.step(states, actions)
    return states


def time_transitions(
    task: BayesNet, states: torch.Tensor, fwd: torch.Tensor, bwd: torch.Tensor, repeats: int
) -> tuple[float, float]:
    """Median seconds of one batched forward (mask + step) and backward (mask + step) move."""

    def forward() -> None:
        task.forward_mask(states)
        task.step(states, fwd)

    def backward() -> None:
        task.backward_mask(states)
        task.backward_step(states, bwd)

    return median_seconds(forward, repeats, inner=20), median_seconds(backward, repeats, inner=20)


def bench_stepping(repeats: int) -> None:
    print("\n== stepping (transitions/s; states with d edges) ==")
    for d in (5, 20):
        task = BayesNet(num_nodes=d)
        for batch in (128, 1024):
            states = mid_trajectory_states(task, batch, steps=d)
            generator = torch.Generator().manual_seed(1)
            fmask = task.forward_mask(states)[:, : task.exit_action].float()
            fwd = torch.multinomial(fmask, 1, generator=generator).squeeze(1)
            bwd = torch.multinomial(task.backward_mask(states).float(), 1, generator=generator)
            bwd = bwd.squeeze(1)

            t_f, t_b = time_transitions(task, states, fwd, bwd, repeats)
            print(
                f"d={d:2d} B={batch:5d}  forward {batch / t_f:12,.0f}/s ({t_f * 1e3:7.3f} ms)  "
                f"backward {batch / t_b:12,.0f}/s ({t_b * 1e3:7.3f} ms)  backward/forward "
                f"time {t_b / t_f:5.2f}x"
            )


def bench_scoring(repeats: int) -> None:
    print("\n== log_reward (BGe) ==")
    for d in (5, 20):
        task = BayesNet(num_nodes=d)
        states = mid_trajectory_states(task, 1024, steps=d)
        start = time.perf_counter()
        task.log_reward(states)
        cold = time.perf_counter() - start
        warm = median_seconds(lambda t=task, s=states: t.log_reward(s), repeats, inner=5)
        print(
            f"d={d:2d} B=1024  cold {cold * 1e3:8.2f} ms ({task.score.cache_size} local scores)  "
            f"warm {1024 / warm:12,.0f} graphs/s  cold/warm {cold / warm:6.1f}x"
        )


def bench_exact(repeats: int) -> None:
    print("\n== exact distribution, d = 5 (29,281 DAGs) ==")
    timings = []
    for _ in range(max(1, repeats // 2)):
        task = BayesNet(num_nodes=5)
        start = time.perf_counter()
        task.all_states()
        enum = time.perf_counter()
        dag = dag_structure(task)
        built = time.perf_counter()
        task.true_distribution()
        posterior = time.perf_counter()
        timings.append((enum - start, built - enum, posterior - built))
    enum_t, dag_t, post_t = (statistics.median(t) for t in zip(*timings, strict=True))
    probs = dag.mask.double() / dag.mask.sum(1, keepdim=True)
    dp = median_seconds(lambda: distribution_from_probs(task, probs), repeats)

    def uniform(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (mask.float() / mask.sum(1, keepdim=True)).log()

    full = median_seconds(lambda: exact_distribution(task, uniform), repeats)
    print(f"enumerate all DAGs      {enum_t:8.3f} s")
    print(f"DAG-of-DAGs edge list   {dag_t:8.3f} s ({len(dag.src):,} edges)")
    print(f"exact posterior         {post_t:8.3f} s (29,281 BGe graph scores)")
    print(f"DP given probabilities  {dp * 1e3:8.2f} ms")
    print(
        f"exact_distribution      {full * 1e3:8.2f} ms (uniform policy; full/DP {full / dp:.1f}x)"
    )


def bench_training(repeats: int) -> None:
    print("\n== training (RL-B, batch 128) ==")
    try:
        from gfn_agents import make_agent
        from gfn_envs.env import GFlowNetEnv
    except ImportError as error:
        print(f"skipped: gfn_agents unavailable ({error})")
        return
    for d in (5, 20):
        env = GFlowNetEnv("gfn_envs.tasks.bayesnet:BayesNet", num_nodes=d)
        agent = make_agent("RL-B", env, batch_size=128, seed=0)
        agent.learn(total_trajectories=128)
        per_iter = median_seconds(lambda a=agent: a.train_step(), repeats)
        print(f"d={d:2d}  {per_iter:7.3f} s/iteration  ({128 / per_iter:8.0f} trajectories/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    bench_stepping(args.repeats)
    bench_scoring(args.repeats)
    bench_exact(args.repeats)
    bench_training(args.repeats)


if __name__ == "__main__":
    main()
