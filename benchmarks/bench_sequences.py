"""Speed of the sequence tasks: stepping, the exact DP on TFBind8, the substructure guide, the
oracles (ViennaRNA for RNA binding, RDKit for molecules), and the RL-G training overhead over RL-B.

Run: ``python benchmarks/bench_sequences.py [--threads 1] [--repeats 5] [--iters 20]``. Every figure
is the median [min–max] of ``--repeats`` runs on this machine; compare ratios within one run.
Oracles: RNA on fresh batches (every sequence reaches ``RNA.duplexfold``) and on the same batch
again (all cache hits); molecules by live RDKit (SMILES assembly + parse + QED) against the shipped
table lookup the task uses.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from gfn_envs import exact
from gfn_envs.tasks.molecules import MoleculeString, compute_qed, index_to_sequences
from gfn_envs.tasks.rna import RNABindingOracle
from gfn_envs.tasks.sequence_guide import SubstructureGuide
from gfn_envs.tasks.tfbind import TFBind8

MDPS = ("fill", "prepend_append")


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def fmt(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):.{digits}f} [{min(v):.{digits}f}–{max(v):.{digits}f}]"


def bench_stepping(repeats: int) -> None:
    print("\n## Stepping (TFBind8, random legal actions until every sequence exits)")
    print("k states/s: whole loop (sampling + step) / task.step alone")
    generator = torch.Generator().manual_seed(0)
    for mdp in MDPS:
        task = TFBind8(mdp=mdp)
        for batch in (16, 1024):
            step_time: list[float] = []

            def rollout(
                batch: int = batch, task: TFBind8 = task, step_time: list[float] = step_time
            ) -> int:
                states, n = task.s0(batch), 0
                for _ in range(task.length):
                    actions = torch.multinomial(
                        task.forward_mask(states)[:, :-1].float(), 1, generator=generator
                    ).squeeze(1)
                    start = time.perf_counter()
                    states = task.step(states, actions)
                    step_time.append(time.perf_counter() - start)
                    n += len(states)
                return n

            n_states = rollout()
            loops = timed(rollout, repeats)
            per_rollout = [
                sum(step_time[i : i + task.length]) for i in range(0, len(step_time), task.length)
            ]
            print(
                f"{mdp:15s} batch {batch:5d}: {fmt([n_states / t for t in loops], 1e-3)} / "
                f"{statistics.median(n_states / t for t in per_rollout) / 1e3:.1f}"
            )


def bench_exact(repeats: int) -> None:
    print("\n## Exact DP on TFBind8 (65,536 objects)")
    for mdp in MDPS:
        task = TFBind8(mdp=mdp)
        build = timed(lambda task=task: exact.dag_structure(task), 1)
        dag = exact.dag_structure(task)
        probs = exact.target_probs(task)
        dp = timed(
            lambda task=task, probs=probs: exact.distribution_from_probs(task, probs), repeats
        )

        def uniform(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return (mask.float() / mask.sum(1, keepdim=True)).log()

        full = timed(lambda task=task: exact.exact_distribution(task, uniform), repeats)
        mlp = torch.nn.Sequential(
            torch.nn.Linear(task.obs_dim, 256),
            torch.nn.ReLU(),
            *[m for _ in range(3) for m in (torch.nn.Linear(256, 256), torch.nn.ReLU())],
            torch.nn.Linear(256, task.n_actions),
        )

        def mlp_policy(
            obs: torch.Tensor, mask: torch.Tensor, mlp: torch.nn.Module = mlp
        ) -> torch.Tensor:
            return mlp(obs)  # logits; the evaluator normalises them over the legal actions

        with_mlp = timed(lambda task=task: exact.exact_distribution(task, mlp_policy), 1)
        print(
            f"{mdp:15s} {len(dag.states):7d} states, {len(dag.src):8d} edges: "
            f"DAG build (once) {build[0]:.2f} s; DP given P_F {fmt(dp, 1e3)} ms; "
            f"DP + uniform policy {fmt(full, 1e3)} ms; DP + 4x256 MLP policy {with_mlp[0]:.2f} s"
        )


def bench_guide(repeats: int) -> None:
    print("\n## Substructure guide on TFBind8: log P_G of 128 backward trajectories (all steps)")
    generator = torch.Generator().manual_seed(0)
    for mdp in MDPS:
        task = TFBind8(mdp=mdp)
        for method in ("dense", "sparse"):  # sparse: the path of non-enumerable tasks
            for buffer in (1_000, 100_000):
                guide = SubstructureGuide(task, method=method)
                seqs = task.sample_terminal(buffer, generator=generator)
                log_r = task.log_reward(seqs[:128])
                observe = timed(lambda g=guide, s=seqs[:128], r=log_r: g.observe(s, r), 1)
                guide.observe(seqs, task.log_reward(seqs))
                objects = seqs[:128]
                states, owners, actions = [], [], []
                s = objects.clone()
                for _ in range(task.length):
                    b = torch.multinomial(task.backward_mask(s).float(), 1, generator=generator)
                    parent = task.backward_step(s, b.squeeze(1))
                    states.append(parent)
                    actions.append(task.forward_action(s, b.squeeze(1)))
                    owners.append(objects)
                    s = parent
                S, A, X = torch.cat(states), torch.cat(actions), torch.cat(owners)
                logits = torch.zeros(len(S), task.n_actions)
                guide.log_prob(S, A, logits, X)  # builds the sparse caches
                score = timed(
                    lambda g=guide, S=S, A=A, lg=logits, X=X: g.log_prob(S, A, lg, X), repeats
                )
                print(
                    f"{mdp:15s} {method:6s} buffer {buffer:6d}: observe(128) "
                    f"{observe[0] * 1e3:.1f} ms, log_prob({len(S)}) {fmt(score, 1e3)} ms"
                )


def bench_training(repeats: int, iters: int) -> None:
    print(f"\n## Training iteration on TFBind8 (batch 128, 4x256 MLPs), s/iteration over {iters}")
    try:
        from gfn_agents import PRESETS, make_agent
    except ImportError:
        print("gfn_agents not available")
        return
    task = TFBind8()
    results: dict[str, list[float]] = {}
    for name in ("RL-B", "RL-G", "TB"):
        if name not in PRESETS:
            print(f"{name}: no such preset yet")
            continue
        runs = []
        for seed in range(repeats):
            agent = make_agent(name, task, seed=seed)
            agent.learn(total_trajectories=128 * 2)  # warm-up (and a non-empty guide buffer)
            start = time.perf_counter()
            agent.learn(total_trajectories=128 * iters, reset_num_timesteps=False)
            runs.append((time.perf_counter() - start) / iters)
        results[name] = runs
        print(f"{name:5s} {fmt(runs, 1.0, 3)} s/iteration")
    if "RL-B" in results and "RL-G" in results:
        ratio = statistics.median(results["RL-G"]) / statistics.median(results["RL-B"])
        print(f"RL-G / RL-B = {ratio:.2f} (target <= 1.30)")


def bench_oracles(repeats: int, batch: int) -> None:
    """Sequences/s of the RNA oracle (fresh and cached) and of RDKit QED against the table."""
    print(f"\n## Oracles, batches of {batch}: objects/s")
    oracle = RNABindingOracle(target=1, length=14)
    gen = torch.Generator().manual_seed(0)
    fresh = [torch.randint(4, (batch, 14), generator=gen) for _ in range(repeats)]
    batches = iter(fresh)
    first = timed(lambda: oracle(next(batches)), repeats)
    batches = iter(fresh)
    again = timed(lambda: oracle(next(batches)), repeats)
    print(f"RNA duplexfold, fresh  {fmt([batch / t for t in first], 1.0, 0)}")
    print(f"RNA duplexfold, cached {fmt([batch / t for t in again], 1.0, 0)}")
    rng = np.random.default_rng(0)
    picks = [rng.choice(11**5, batch, replace=False) for _ in range(repeats)]
    picked = iter(picks)
    live = timed(lambda: compute_qed(index_to_sequences(next(picked))), repeats)
    task = MoleculeString()
    sequences = iter([task.sequences_from_index(torch.from_numpy(i)) for i in picks])
    lookup = timed(lambda: task.log_reward(next(sequences)), repeats)
    print(f"RDKit QED, live        {fmt([batch / t for t in live], 1.0, 0)}")
    print(f"MoleculeString table   {fmt([batch / t for t in lookup], 1.0, 0)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--oracle-batch", type=int, default=1000)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# bench_sequences: torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    bench_stepping(args.repeats)
    bench_exact(args.repeats)
    bench_guide(args.repeats)
    bench_oracles(args.repeats, args.oracle_batch)
    if not args.skip_training:
        bench_training(min(args.repeats, 3), args.iters)


if __name__ == "__main__":
    main()
