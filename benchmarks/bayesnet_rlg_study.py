"""BayesNet: the on-policy learners against the paper's BN settings, one factor at a time.

Each run trains one agent (RL-U, RL-B, RL-G or TB, 4 × 256 networks, batch 128, one torch thread)
on one data set (d = 5 unless ``d4``) and records the exact TV, JSD and |log Z − log Z*| of P_F^T at checkpoints.
A *setting* is a list of factors applied on top of gfn-gym's defaults:

* ``ref-data``: the paper's BN data set instead of ``BayesNet(num_nodes=5)``'s. The paper's code
  draws, from ``numpy.random.default_rng(0)`` and in this order: a 5 × 5 Bernoulli(p = 0.5) matrix
  kept strictly below the diagonal, a node permutation applied to rows and columns, then node by
  node (in index order) one intercept draw (discarded) and one N(0, 1) weight per parent (parents
  in index order), then ancestral samples (100 per node) in Kahn's topological order, the noise
  drawn with standard deviation 0.1. :func:`reference_data` redoes these draws with numpy only;
  gfn-gym's own generator draws a permutation, uniforms and a full weight matrix instead, so the
  two data sets differ (gfn-gym's seed-0 graph has 1 edge, the paper's 6).
* ``d4``: the 4-node data set ``BayesNet(num_nodes=4, num_samples=100, noise_std=0.1, seed=0)``,
  whose posterior puts 30 % of its mass evenly on the 24 complete DAGs (one equivalence class).
* ``lr-z``: ``lr_z = 1`` (the paper's BN script) instead of 0.1.
* ``guide-75``: the RL-G guide threshold at 75 nats (hard-coded in the paper's code) instead of the
  0.75-quantile of the log-rewards; the cap is 1e−10 in both (see docs/bayesnet.md on capping the
  exit probability, as gfn-gym does, or the exit logit, as the paper's code does).
* ``tb-backward``: RL-B / RL-G train P_B as the paper's BN script does (:class:`TBStyleBackward`)
  instead of by the policy-gradient backward update of :class:`gfn_agents.backward.CoupledBackward`.
* ``adj-obs``: the networks see the adjacency matrix only (the paper's input), not [A, closure].
* ``eps``: TB with ε-uniform exploration (ε = 0.5 decayed by 0.99 per iteration to 0.01).

The results and their reading are in docs/bayesnet.md ("Training on dense posteriors").

Usage::

    .venv/bin/python benchmarks/bayesnet_rlg_study.py --jobs 2                  # the main table
    .venv/bin/python benchmarks/bayesnet_rlg_study.py --agents RL-G --iterations 2000 \\
        --every 100 --settings ref-data,lr-z,guide-75,tb-backward,adj-obs --jobs 2
    .venv/bin/python benchmarks/bayesnet_rlg_study.py --report --out runs.jsonl \\
        --at 25600 102400 --exits ref-data,lr-z:0                               # a summary
    .venv/bin/python benchmarks/bayesnet_rlg_study.py --data-sets              # the posteriors

Cost: on an idle core one iteration takes about 0.2 s for RL-B / RL-G, 0.14 s for RL-U and 0.1 s
for TB, and an exact evaluation 0.5 s. On a 2-core machine shared with other jobs, a 200-iteration
run (25,600 trajectories) took 1–3 minutes, the default table (4 settings × 4 agents × 3 seeds,
``--jobs 2``) 43 minutes, and a 2,000-iteration RL-G run 10–17 minutes. Results are appended as
JSON lines to ``--out`` and summarised as mean [per seed].
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gfn_agents import make_agent
from gfn_agents.backward import CoupledBackward
from gfn_agents.logprobs import step_log_probs
from gfn_agents.rollout import sample_trajectories
from gfn_envs import metrics
from gfn_envs.env import GFlowNetEnv
from gfn_envs.exact import exact_distribution
from gfn_envs.scoring import guided_log_probs
from gfn_envs.tasks.bayesnet import BayesNet

AGENTS = ("RL-U", "RL-B", "RL-G", "TB")
FACTORS = ("ref-data", "d4", "lr-z", "guide-75", "tb-backward", "adj-obs", "eps")
DEFAULT_SETTINGS = ("", "ref-data", "lr-z", "ref-data,lr-z")


def reference_data(
    num_nodes: int = 5,
    expected_edges: float = 5.0,
    num_samples: int = 100,
    noise_scale: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The paper's BN data generation (see the module docstring): data, graph, weights.

    ``graph[i, j] = 1`` iff i → j; ``weights[i, j]`` is the weight of that edge.
    """
    d = num_nodes
    rng = np.random.default_rng(seed)
    p = expected_edges / (d * (d - 1) / 2)
    lower = np.tril(rng.binomial(1, p, size=(d, d)), k=-1)
    perm = rng.permutation(d)
    graph = lower[perm][:, perm]
    weights = np.zeros((d, d))
    for j in range(d):
        parents = np.flatnonzero(graph[:, j])
        draws = rng.normal(0.0, 1.0, size=len(parents) + 1)
        weights[parents, j] = draws[1:]  # draws[0] is the intercept, set to 0
    data = np.zeros((num_samples, d))
    for j in kahn_order(graph):
        parents = np.flatnonzero(graph[:, j])
        if len(parents):
            mean = weights[parents, j] @ data[:, parents].T
            data[:, j] = rng.normal(mean, noise_scale)
        else:
            data[:, j] = rng.normal(0.0, noise_scale, size=num_samples)
    return data, graph, weights


def kahn_order(graph: np.ndarray) -> list[int]:
    """Topological order by generations: roots in index order, then each node's children (in index
    order) as their last parent is processed."""
    indegree = graph.sum(axis=0).tolist()
    generation = [j for j in range(len(graph)) if indegree[j] == 0]
    order: list[int] = []
    while generation:
        order += generation
        following = []
        for i in generation:
            for j in np.flatnonzero(graph[i]):
                indegree[j] -= 1
                if indegree[j] == 0:
                    following.append(int(j))
        generation = following
    return order


class TBStyleBackward:
    """P_B trained as in the paper's BN script: a squared TB residual of backward-sampled
    trajectories with P_F replaced by a reference policy.

    For B trajectories τ = (s0 → … → x) sampled backwards by P_B from the forward batch's objects x,

        loss = (1/B) Σ_n ( Σ_t log P_ref(s_{t+1}|s_t) + log P_ref(s_f|x) − log R̂(x) + log Z
                           − Σ_t log P_B(s_t|s_{t+1}) )²,

    with P_ref = P_G (RL-G) or P_F (RL-B), both including the exit factor at x, and P_ref and log Z
    detached: one Adam step (``learning_rate``) on P_B's parameters only. The terms that are
    constant given x (exit, log R̂, log Z) do not change the expected gradient, which is that of
    E_x KL(P_B(·|x) ‖ P_ref(·|x)), but they are in the residual and so in its variance.
    """

    def __init__(self, agent: Any, guide: Any) -> None:
        self.agent, self.guide = agent, guide
        self.optimizer = torch.optim.Adam(
            agent.networks.backward_parameters(), lr=agent.learning_rate
        )

    def exit_log_prob(self, objects: Tensor) -> Tensor:
        """log P_ref(s_f | x), without gradient."""
        task = self.agent.task
        exit_ = torch.full((len(objects),), task.exit_action, device=objects.device)
        with torch.no_grad():
            log_pf, log_pg = guided_log_probs(
                task, self.agent.networks.forward_outputs, objects, exit_, objects, self.guide
            )
        return log_pf if log_pg is None else log_pg

    def update(self, objects: Tensor, log_rewards: Tensor) -> dict[str, float]:
        agent = self.agent
        traj = sample_trajectories(
            agent.backward_env, agent.networks.backward_logits, agent.generator, starts=objects
        )
        if len(traj.actions) == 0:
            return {}
        lp = step_log_probs(agent.networks, agent.task, traj, guide=self.guide)
        reference = lp.log_pf if self.guide is None else lp.log_guide
        target = agent.clipped_log_rewards(traj.log_rewards.float()) - agent.networks.log_z.detach()
        residual = (
            traj.per_trajectory_sum(reference - lp.log_pb) + self.exit_log_prob(traj.objects)
        ) - target
        loss = residual.pow(2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"backward_tb_loss": float(loss.detach())}

    def modules(self) -> dict[str, Any]:
        return {"backward_optimizer": self.optimizer}


class AdjacencyObsBayesNet(BayesNet):
    """BayesNet whose observation is the adjacency matrix alone (d² floats), as in the paper."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.obs_dim = self.num_nodes * self.num_nodes

    def encode(self, states: Tensor) -> Tensor:
        return states[:, : self.obs_dim].float()


def make_task(factors: set[str]) -> BayesNet:
    """The task of a setting (d = 5 unless ``d4``); RL-G uses its default guide."""
    kwargs: dict[str, Any] = {"guide_threshold": 75.0} if "guide-75" in factors else {}
    cls = AdjacencyObsBayesNet if "adj-obs" in factors else BayesNet
    if "ref-data" in factors:
        data, graph, _ = reference_data()
        return cls(data=data, true_graph=graph, **kwargs)
    if "d4" in factors:
        return cls(num_nodes=4, num_samples=100, noise_std=0.1, seed=0, **kwargs)
    return cls(num_nodes=5, **kwargs)


def describe_data_sets() -> None:
    """Print, for gfn-gym's default d = 5 data, the paper's d = 5 data and the 4-node example, the
    posterior's log Z*, max log R, expected edge count, mass on the complete DAGs, the number of
    DAGs holding 90 % of it, and the share of DAGs (and of posterior mass) that the two guide
    thresholds cap: the default 0.75-quantile and 75 nats."""
    print(
        f"{'data set':10s} {'log Z*':>7s} {'max logR':>8s} {'E[edges]':>8s} {'P*(cmpl)':>8s} "
        f"{'90% DAGs':>13s} {'q0.75':>6s} {'DAGs<=75':>8s} {'mass<=75':>8s}"
    )
    for name, factors in (("default", set()), ("ref-data", {"ref-data"}), ("d4", {"d4"})):
        task = make_task(factors)
        p, states = task.true_distribution(), task.terminal_states()
        log_r = task.log_reward(states).to(p.device)
        edges = task.adjacency(states).sum(dim=(1, 2)).to(p.device).double()
        complete = edges == task.num_nodes * (task.num_nodes - 1) // 2
        top = p.sort(descending=True).values.cumsum(0)
        n90 = int((top < 0.9).sum()) + 1
        capped = log_r <= 75.0
        print(
            f"{name:10s} {task.log_partition():7.1f} {float(log_r.max()):8.1f} "
            f"{float((p * edges).sum()):8.1f} {float(p[complete].sum()):8.3f} "
            f"{n90:6d} of {len(p):5d} {task.default_guide().threshold:6.1f} "
            f"{float(capped.double().mean()):8.3f} {float(p[capped].sum()):8.4f}"
        )


def run(job: tuple[str, str, int, int, int]) -> dict[str, Any]:
    """Train one (agent, setting, seed); exact metrics every ``every`` iterations.

    Besides TV, JSD and |log Z − log Z*|, each checkpoint records ``complete_mass``, the mass P_F^T
    puts on the complete DAGs (d(d−1)/2 edges), and ``edge_count_mass``, its mass on the DAGs with
    0, 1, … edges, and ``exit_prob``, P_F's exit probability at the DAGs with 0, 1, … edges
    (posterior-weighted mean); the posterior's values are ``complete_mass_target`` and
    ``edge_count_mass_target``.
    """
    torch.set_num_threads(1)
    name, setting, seed, iterations, every = job
    factors = {f for f in setting.split(",") if f}
    task = make_task(factors)
    kwargs: dict[str, Any] = {"seed": seed}
    if "lr-z" in factors:
        kwargs["lr_z"] = 1.0
    if "eps" in factors and name == "TB":
        kwargs.update(epsilon=0.5, epsilon_decay=0.99, epsilon_end=0.01)
    agent = make_agent(name, GFlowNetEnv(task), **kwargs)
    learner = getattr(agent, "backward_learner", None)
    if "tb-backward" in factors and isinstance(learner, CoupledBackward):  # RL-B and RL-G
        agent.backward_learner = TBStyleBackward(agent, learner.guide)
    target = task.true_distribution()
    edges = task.adjacency(task.terminal_states()).sum(dim=(1, 2))
    complete = edges == task.num_nodes * (task.num_nodes - 1) // 2
    log_z_star = task.log_partition()
    curve = []
    train_seconds, done = 0.0, 0
    for checkpoint in range(every, iterations + 1, every):
        start = time.perf_counter()
        agent.learn(
            total_trajectories=agent.batch_size * (checkpoint - done), reset_num_timesteps=False
        )
        train_seconds += time.perf_counter() - start
        done = checkpoint
        p = exact_distribution(task, agent.forward_log_probs).to(target.device)
        curve.append(
            {
                "iterations": checkpoint,
                "trajectories": checkpoint * agent.batch_size,
                "tv": metrics.tv(p, target),
                "jsd": metrics.jsd(p, target),
                "logz_error": metrics.logz_error(agent.log_z, log_z_star),
                "complete_mass": float(p[complete].sum()),
                "edge_count_mass": [
                    float(p[edges == k].sum()) for k in range(int(edges.max()) + 1)
                ],
                "exit_prob": exit_probabilities(agent, task, edges, target),
            }
        )
    return {
        "agent": name,
        "setting": setting or "defaults",
        "seed": seed,
        "log_z_star": log_z_star,
        "complete_mass_target": float(target[complete].sum()),
        "edge_count_mass_target": [
            float(target[edges == k].sum()) for k in range(int(edges.max()) + 1)
        ],
        "train_seconds": train_seconds,
        "curve": curve,
    }


def exit_probabilities(agent: Any, task: BayesNet, edges: Tensor, target: Tensor) -> list[float]:
    """P_F(exit | G) averaged over the DAGs G with k edges, weighted by the posterior, k = 0, 1, …"""
    states = task.terminal_states()
    log_p = agent.forward_log_probs(task.encode(states), task.forward_mask(states))
    exit_ = log_p[:, task.exit_action].exp().double().to(target.device)
    out = []
    for k in range(int(edges.max()) + 1):
        w = target[edges == k]
        out.append(float((w * exit_[edges == k]).sum() / w.sum()))
    return out


def summarise(results: list[dict[str, Any]], metric: str, at: list[int] | None = None) -> None:
    """Print ``metric`` as mean [per seed], one row per (setting, agent, trajectories), at the
    checkpoints ``at`` (trajectories; default: each run's last checkpoint)."""
    rows: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for r in results:
        points = [c for c in r["curve"] if c["trajectories"] in at] if at else r["curve"][-1:]
        for c in points:
            if metric in c:
                key = (r["setting"], r["agent"], c["trajectories"])
                rows.setdefault(key, []).append((r["seed"], c[metric]))
    where = "at " + ", ".join(map(str, at)) + " trajectories" if at else "at the last checkpoint"
    print(f"\n{metric} {where}, mean [per seed]")
    for (setting, agent, trajectories), values in sorted(rows.items()):
        values.sort()
        mean = statistics.mean(v for _, v in values)
        per_seed = ", ".join(f"{v:.2f}" for _, v in values)
        seeds = ",".join(str(s) for s, _ in values)
        print(f"  {setting:45s} {agent:5s} {trajectories:7d} {mean:.2f} [{per_seed}] seeds {seeds}")


def print_exit_probabilities(results: list[dict[str, Any]], setting: str, seed: int) -> None:
    """Print the RL-G run of ``setting`` and ``seed``: P_F(exit) at the DAGs with k edges
    (posterior-weighted) for the two largest k below the complete DAGs, P_F^T(complete DAGs) and
    the exact TV, at every checkpoint."""
    for r in results:
        if r["agent"] == "RL-G" and r["setting"] == setting and r["seed"] == seed:
            k = len(r["edge_count_mass_target"]) - 1
            print(f"\nRL-G, {setting}, seed {seed} (P*(complete) {r['complete_mass_target']:.2f})")
            print(f"  {'trajectories':>12s} exit|{k - 2} edges exit|{k - 1} edges complete  tv")
            for c in r["curve"]:
                e = c["exit_prob"]
                print(
                    f"  {c['trajectories']:12d} {e[k - 2]:12.3f} {e[k - 1]:12.3f} "
                    f"{c['complete_mass']:8.2f} {c['tv']:.2f}"
                )
            return
    raise SystemExit(f"--exits: no RL-G run with setting {setting!r} and seed {seed} in --out")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument(
        "--settings",
        nargs="+",
        default=list(DEFAULT_SETTINGS),
        help=f"comma-separated factors from {FACTORS}; '' is gfn-gym's defaults",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=200, help="of 128 trajectories each")
    parser.add_argument("--every", type=int, default=50, help="iterations between evaluations")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="bayesnet_rlg_study.jsonl")
    parser.add_argument(
        "--report", action="store_true", help="only summarise the runs already in --out"
    )
    parser.add_argument(
        "--data-sets", action="store_true", help="only describe the three data sets' posteriors"
    )
    parser.add_argument(
        "--at", nargs="+", type=int, help="with --report: checkpoints to show, in trajectories"
    )
    parser.add_argument(
        "--exits",
        metavar="SETTING:SEED",
        help="with --report: P_F's exit probabilities of the RL-G run of SETTING and SEED",
    )
    args = parser.parse_args()
    if args.data_sets:
        describe_data_sets()
        return
    if args.report:
        with open(args.out) as f:
            results = [json.loads(line) for line in f if line.strip()]
        for metric in ("tv", "jsd", "logz_error", "complete_mass"):
            summarise(results, metric, args.at)
        if args.exits:
            setting, seed = args.exits.rsplit(":", 1)
            print_exit_probabilities(results, setting or "defaults", int(seed))
        return
    for setting in args.settings:
        unknown = {f for f in setting.split(",") if f} - set(FACTORS)
        if unknown:
            parser.error(f"unknown factor(s) {sorted(unknown)}; allowed: {FACTORS}")
    if args.every < 1 or args.iterations % args.every:
        parser.error("--iterations must be a positive multiple of --every")
    jobs = [
        (agent, setting, seed, args.iterations, args.every)
        for setting in args.settings
        for agent in args.agents
        for seed in args.seeds
    ]
    print(
        f"{len(jobs)} runs, {args.iterations} iterations × 128 trajectories, one torch thread "
        f"each, {args.jobs} at once (the machine may be shared)"
    )
    results = []
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        for result in pool.map(run, jobs):
            results.append(result)
            last = result["curve"][-1]
            print(
                f"{result['setting']:45s} {result['agent']:5s} seed {result['seed']}: "
                f"tv {last['tv']:.3f} jsd {last['jsd']:.3f} logz_err {last['logz_error']:.2f} "
                f"complete {last['complete_mass']:.2f} ({result['train_seconds']:.0f} s)",
                flush=True,
            )
            with open(args.out, "a") as f:
                f.write(json.dumps(result) + "\n")
    for metric in ("tv", "jsd", "complete_mass"):
        summarise(results, metric)
    assert all(math.isfinite(r["curve"][-1]["tv"]) for r in results)


if __name__ == "__main__":
    main()
