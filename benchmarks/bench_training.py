"""Training throughput of every agent on the paper's configuration, against its physical floor.

Configuration (paper section 5): HyperGrid 2 × 64, R0 = 0.01, batches of 128
trajectories, P_F and P_B MLPs 4 × 256, value networks 2 × 256, one torch thread. Each agent first
trains ``--warmup`` iterations untimed (trajectories grow from about 3 to 20–60 steps), then
``--blocks`` blocks of ``--block-iters`` iterations are timed; the script prints the median
[min–max] of the blocks' **transitions/s** (forward actions, exit included), with the mean
trajectory length, b and N (below) and U/N, the share of an iteration's rows that are distinct
(observation, mask) rows, the states RL-T's step runs on.

**The floor.** The script measures the machine's MLP throughput (states/s) for the same networks:
forward without gradient, and forward + backward, at the two batch sizes the algorithms use: the
rollout batch b (mean number of live trajectories per rollout step) and the flat batch N (all
transitions of an iteration). An algorithm's floor is the time of the network passes per transition
it cannot avoid:

* RL-U:  P_F fwd+bwd at b (the sampling pass, reused for the loss), value fwd+bwd at N;
* RL-B, RL-G: RL-U + P_B fwd at the children (N) + the backward rollout's P_B fwd+bwd at b +
  P_F fwd at the parents (N) + the backward value fwd+bwd (N), the backward terms weighted by
  (N − B)/N, the number of moves per transition;
* RL-T: P_F fwd at b (sampling) + value fwd+bwd at N + the gradient pass fwd+bwd at N (the
  surrogate gradient, which also builds the linearisation the Fisher products reuse) + ``cg_iters``
  Fisher-vector products, each counted as one fwd+bwd at N + one line-search fwd at N. A product
  is Gauss-Newton: one Jacobian-vector product (forward mode, by the double-vjp trick) and one
  vector-Jacobian product (backward). Per layer that is 2 + 2 matrix products against 1 + 2 for a
  fwd+bwd, so the floor's count is a lower bound (about 1.3× it in FLOPs). RL-T's step runs on the
  U distinct (observation, mask) rows of the N, weighted by their counts, so it can beat this
  floor; the script also prints its share of the **floor at U rows**, the same passes with the
  gradient pass, the products and the line-search forward at U rows;
* TB, DB, SubTB (learned P_B): P_F fwd+bwd at b + P_B fwd+bwd at N × (N − B)/N; the "-U" variants
  only P_F fwd+bwd at b.
* SubEB-U: RL-U's passes (the Sub-EB critic's loss over all sub-trajectories adds arithmetic on
  the N values, no network pass); SubEB-B: + P_B fwd+bwd at N × (N − B)/N (its loss reads the
  forward batch's log P_B with P_B's graph);
* RL-TLM: RL-U + the target P_B fwd at the children (N) + the TLM step's online P_B fwd+bwd at
  N, both × (N − B)/N; TB-TLM: P_F fwd+bwd at b + the same two P_B passes;
* RL-PPO: P_F fwd at b (sampling, no graph kept) + value fwd+bwd at N + ``n_epochs`` (4) P_F
  fwd+bwd over the N rows (one per epoch, cut into minibatches). The MLP rate is measured at N,
  so for minibatches of m < B trajectories (N·m/B rows) the floor is a lower bound on the time.

The MLP rates are measured right after each timed block, at that block's b and N, so a block's
throughput and its floor see the same load on a shared machine; the share of floor is computed per
block and the script prints its median [min–max]. Throughput ÷ floor is the share of time spent
in unavoidable network work; the rest is overhead (Python, masks, env steps, copies, optimizer
steps). Targets: TB ≥ 90 %, RL-U and RL-B ≥ 80 %, RL-T ≥ 75 %; the learners beyond the paper have
none yet.

**RL-T's Fisher product.** With RL-T among the presets, the script also times, on one on-policy
batch of the trained RL-T (N rows, U distinct) and with its policy architecture, one fwd+bwd at N,
the search for the distinct rows (:func:`gfn_agents.trpo.distinct_states`), one Fisher-vector
product of :class:`gfn_agents.trpo.GaussNewtonFisher` at N rows and at the U distinct rows, its two
halves, and for reference the same JVP by forward mode (``torch.func.jvp``, which recomputes the
forward pass) and autograd's double backward of the KL gradient (the Hessian-vector product RL-T
used before), and prints each as a multiple of the fwd+bwd at N.

**torchgfn.** When a Python with ``import gfn`` is available (``--anchor-python``, default
``/tmp/anchor-venv/bin/python``; torchgfn needs numpy < 2, so it lives outside ``.venv``), the
same configuration is run with torchgfn's TB (separate P_F and P_B MLPs 4 × 256, Adam 1e-3 /
log Z 0.1) and the ratio of our TB to it is printed. Target ≥ 1.0×.

Usage::

    .venv/bin/python benchmarks/bench_training.py            # full: 150 warm-up iterations
    .venv/bin/python benchmarks/bench_training.py --quick    # 30 warm-up, 3 blocks of 5
    .venv/bin/python benchmarks/bench_training.py --presets TB RL-U --profile TB
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_agents import PRESETS as REGISTRY
from gfn_agents import GFlowNetAlgorithm, PolicyGradientGFN, make_agent
from gfn_agents.policies import mlp
from gfn_agents.rollout import Trajectories, sample_trajectories
from gfn_agents.trpo import GaussNewtonFisher, _flat, distinct_states
from gfn_envs.scoring import masked_log_softmax, policy_kl

GRID = {"ndim": 2, "height": 64, "R0": 0.01}
ENV_ID = "gfn_envs/HyperGrid-v0"
PRESETS = ("RL-U", "RL-B", "RL-G", "RL-T", "TB", "DB", "SubTB", "TB-U")
POLICY_ARCH = (256, 256, 256, 256)
VALUE_ARCH = (256, 256)
TARGETS = {"TB": 0.90, "RL-U": 0.80, "RL-B": 0.80, "RL-T": 0.75}


@dataclass
class Pass:
    """One unavoidable network pass: ``net`` in {policy, value}, ``mode`` in {fwd, fwdbwd},
    ``batch`` in {rollout, flat, distinct}, ``weight`` rows per forward transition (``"moves"`` =
    (N−B)/N)."""

    net: str
    mode: str
    batch: str
    weight: float | str = 1.0


PG = [Pass("policy", "fwdbwd", "rollout"), Pass("value", "fwdbwd", "flat")]
COUPLED = [
    Pass("policy", "fwd", "flat", "moves"),  # P_B at the children
    Pass("policy", "fwdbwd", "rollout", "moves"),  # backward rollout with P_B
    Pass("policy", "fwd", "flat", "moves"),  # P_F at the parents
    Pass("value", "fwdbwd", "flat", "moves"),  # backward value network
]
BALANCE = [Pass("policy", "fwdbwd", "rollout"), Pass("policy", "fwdbwd", "flat", "moves")]
TLM = [
    Pass("policy", "fwd", "flat", "moves"),  # the target P_B at the children
    Pass("policy", "fwdbwd", "flat", "moves"),  # the TLM step of the online P_B
]
FLOORS: dict[str, list[Pass]] = {
    "RL-U": PG,
    "RL-B": PG + COUPLED,
    "RL-G": PG + COUPLED,
    "RL-T": [
        Pass("policy", "fwd", "rollout"),
        Pass("value", "fwdbwd", "flat"),
        Pass("policy", "fwdbwd", "flat"),
        Pass("policy", "fwdbwd", "flat", 10.0),
        Pass("policy", "fwd", "flat"),
    ],
    "TB": BALANCE,
    "DB": BALANCE,
    "SubTB": BALANCE,
    "TB-U": [Pass("policy", "fwdbwd", "rollout")],
    "DB-U": [Pass("policy", "fwdbwd", "rollout")],
    "SubTB-U": [Pass("policy", "fwdbwd", "rollout")],
    "SubEB-U": PG,
    "SubEB-B": PG + [Pass("policy", "fwdbwd", "flat", "moves")],
    "RL-TLM": PG + TLM,
    "TB-TLM": [Pass("policy", "fwdbwd", "rollout"), *TLM],
    "RL-PPO": [
        Pass("policy", "fwd", "rollout"),
        Pass("value", "fwdbwd", "flat"),
        Pass("policy", "fwdbwd", "flat", 4.0),
    ],
}
FLOORS_AT_DISTINCT: dict[str, list[Pass]] = {
    "RL-T": [
        Pass("policy", "fwd", "rollout"),
        Pass("value", "fwdbwd", "flat"),
        Pass("policy", "fwdbwd", "distinct"),
        Pass("policy", "fwdbwd", "distinct", 10.0),
        Pass("policy", "fwd", "distinct"),
    ],
}
"""The floors with the passes of RL-T's step at the U distinct rows it runs on."""


def build(name: str, batch_size: int, seed: int) -> GFlowNetAlgorithm:
    kwargs: dict[str, Any] = {"batch_size": batch_size, "net_arch": POLICY_ARCH, "seed": seed}
    if REGISTRY[name][0] is PolicyGradientGFN:
        kwargs["value_net_arch"] = VALUE_ARCH
    return make_agent(name, ENV_ID, env_kwargs=GRID, **kwargs)


def on_policy_batch(agent: GFlowNetAlgorithm) -> Trajectories:
    """One batch of the agent's current P_F, without the autograd graph."""
    return sample_trajectories(
        agent.forward_env, agent.networks.forward_outputs, agent.generator, grad=False
    )


def batch_shape(agent: GFlowNetAlgorithm) -> tuple[float, float, float]:
    """(rollout batch b, flat batch N, distinct (observation, mask) rows U) of one on-policy batch
    of the agent's current P_F."""
    traj = on_policy_batch(agent)
    steps, flat = traj.valid.shape[0], len(traj.actions)
    return flat / steps, float(flat), float(len(distinct_states(traj.obs, traj.masks)[2].unique()))


def time_agent(
    name: str,
    batch_size: int,
    warmup: int,
    blocks: int,
    block_iters: int,
    seed: int,
    repeats: int,
) -> dict[str, Any]:
    """Warm up, then time ``blocks`` blocks. Right after each block the MLP rates of the agent's
    floor are measured at that block's batch shapes, so throughput and floor see the same machine
    load; the share of floor is taken per block."""
    agent = build(name, batch_size, seed)
    agent.learn(total_trajectories=batch_size * warmup)
    obs_dim = 2 * GRID["height"]
    nets = {"policy": mlp(obs_dim, 3, POLICY_ARCH), "value": mlp(obs_dim, 1, VALUE_ARCH)}
    rates, lengths, floors, distinct_floors, shapes = [], [], [], [], []
    for _ in range(blocks):
        start_steps, start = agent.num_timesteps, time.perf_counter()
        agent.learn(total_trajectories=batch_size * block_iters, reset_num_timesteps=False)
        elapsed = time.perf_counter() - start
        transitions = agent.num_timesteps - start_steps
        rates.append(transitions / elapsed)
        lengths.append(transitions / (batch_size * block_iters))
        shape = batch_shape(agent)
        moves = (shape[1] - batch_size) / shape[1]
        floors.append(floor_rate(FLOORS[name], nets, obs_dim, shape, moves, repeats))
        if name in FLOORS_AT_DISTINCT:
            distinct_floors.append(
                floor_rate(FLOORS_AT_DISTINCT[name], nets, obs_dim, shape, moves, repeats)
            )
        shapes.append(shape)
    return {
        "rates": rates,
        "floors": floors,
        "shares": [r / f for r, f in zip(rates, floors, strict=True)],
        "distinct_shares": (  # only for the agents of FLOORS_AT_DISTINCT
            [r / f for r, f in zip(rates, distinct_floors, strict=True)] if distinct_floors else []
        ),
        "length": statistics.mean(lengths),
        "rollout_batch": statistics.mean(s[0] for s in shapes),
        "flat_batch": statistics.mean(s[1] for s in shapes),
        "distinct": statistics.mean(s[2] / s[1] for s in shapes),
        "agent": agent,
    }


def network_rate(net: nn.Module, in_dim: int, batch: int, mode: str, repeats: int) -> float:
    """Median states/s of ``net`` on random inputs of ``batch`` rows (``fwd`` or ``fwdbwd``)."""
    x = torch.rand(batch, in_dim)
    reps = max(3, int(20_000 / batch))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(reps):
            if mode == "fwd":
                with torch.no_grad():
                    net(x)
            else:
                net.zero_grad(set_to_none=True)
                net(x).sum().backward()
        samples.append(batch * reps / (time.perf_counter() - start))
    return statistics.median(samples)


def floor_rate(
    passes: list[Pass],
    nets: dict[str, nn.Module],
    obs_dim: int,
    shape: tuple[float, float, float],
    moves: float,
    repeats: int,
) -> float:
    """Transitions/s if only ``passes`` ran: 1 / Σ weight · (rows per transition) / rate, each
    rate (rows/s) measured now at the batch ``shape`` (b, N, U). A rollout or flat pass runs
    once per transition, a pass over the distinct rows U/N times."""
    rates: dict[tuple[str, str, int], float] = {}
    rows = dict(zip(("rollout", "flat", "distinct"), shape, strict=True))
    seconds = 0.0
    for p in passes:
        weight = moves if p.weight == "moves" else float(p.weight)
        if p.batch == "distinct":
            weight *= shape[2] / shape[1]
        key = (p.net, p.mode, round(rows[p.batch]))
        if key not in rates:
            rates[key] = network_rate(nets[p.net], obs_dim, key[2], p.mode, repeats)
        seconds += weight / rates[key]
    return 1.0 / seconds


def fisher_costs(traj: Trajectories, repeats: int, seed: int) -> dict[str, float]:
    """Median seconds of RL-T's network work on the batch ``traj`` (N rows) with a fresh policy
    MLP: fwd+bwd at N, the search for the U distinct rows, the Gauss-Newton product at N and at U
    rows (weighted by the rows per state), its JVP and VJP halves at N, the JVP by forward mode,
    and the double-backward Hessian-vector product of the KL at N."""
    gen = torch.Generator().manual_seed(seed)
    obs, mask = traj.obs, traj.masks
    net = mlp(obs.shape[1], mask.shape[1], POLICY_ARCH)
    params = list(net.parameters())

    def product_at(rows_obs: Tensor, rows_mask: Tensor, counts: Tensor) -> GaussNewtonFisher:
        log_probs = masked_log_softmax(net(rows_obs), rows_mask)
        seed_rows = torch.randn(rows_mask.shape, generator=gen) * rows_mask
        return GaussNewtonFisher(params, log_probs, rows_mask, seed_rows, counts, 128, 1e-3)

    fisher = product_at(obs, mask, torch.ones(len(obs)))
    log_probs = fisher.log_probs
    unique_obs, unique_mask, states = distinct_states(obs, mask)
    over_states = product_at(unique_obs, unique_mask, torch.bincount(states).float())
    kl = policy_kl(log_probs.detach(), log_probs, mask).sum() / 128
    kl_grad = _flat(torch.autograd.grad(kl, params, create_graph=True), params)
    v = torch.randn(len(fisher.gradient), generator=gen)

    def fwd_bwd() -> None:
        net.zero_grad(set_to_none=True)
        net(obs).sum().backward()

    values = {name: p.detach() for name, p in net.named_parameters()}
    tangents = dict(zip(values, v.split([p.numel() for p in params]), strict=True))
    tangents = {name: t.view_as(values[name]) for name, t in tangents.items()}

    def forward_mode() -> None:
        def log_probs_at(named: dict[str, Tensor]) -> Tensor:
            return masked_log_softmax(torch.func.functional_call(net, named, (obs,)), mask)

        torch.func.jvp(log_probs_at, (values,), (tangents,))

    passes = {
        "fwd+bwd": fwd_bwd,
        "distinct rows search": lambda: distinct_states(obs, mask),
        "Gauss-Newton product": lambda: fisher(v),
        "  at the U rows": lambda: over_states(v),
        "  its JVP": lambda: fisher.jvp(v),
        "  JVP by forward mode": forward_mode,
        "  its VJP": lambda: torch.autograd.grad(
            log_probs, params, fisher.weights, retain_graph=True
        ),
        "double-backward HVP": lambda: torch.autograd.grad(kl_grad @ v, params, retain_graph=True),
    }
    samples: dict[str, list[float]] = {name: [] for name in passes}
    for _ in range(repeats):  # interleaved, so every pass sees the same load
        for name, run in passes.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


ANCHOR_SCRIPT = r"""
import json, statistics, sys, time, torch
from gfn.estimators import DiscretePolicyEstimator
from gfn.gflownet import TBGFlowNet
from gfn.gym import HyperGrid
from gfn.preprocessors import KHotPreprocessor
from gfn.samplers import Sampler
from gfn.utils.common import set_seed
from gfn.utils.modules import MLP
warmup, blocks, block_iters, batch = map(int, sys.argv[1:5])
set_seed(0); torch.set_num_threads(1)
env = HyperGrid(ndim=2, height=64, reward_fn_str="original",
                reward_fn_kwargs={"R0": 0.01, "R1": 0.5, "R2": 2.0})
pre = KHotPreprocessor(height=env.height, ndim=env.ndim)
pf_net = MLP(input_dim=pre.output_dim, output_dim=env.n_actions, hidden_dim=256, n_hidden_layers=4)
pb_net = MLP(input_dim=pre.output_dim, output_dim=env.n_actions - 1, hidden_dim=256,
             n_hidden_layers=4)
pf = DiscretePolicyEstimator(pf_net, env.n_actions, preprocessor=pre, is_backward=False)
pb = DiscretePolicyEstimator(pb_net, env.n_actions, preprocessor=pre, is_backward=True)
gfn = TBGFlowNet(pf=pf, pb=pb, init_logZ=0.0)
sampler = Sampler(estimator=pf)
opt = torch.optim.Adam(gfn.pf_pb_parameters(), lr=1e-3)
opt.add_param_group({"params": gfn.logz_parameters(), "lr": 1e-1})
def step():
    traj = sampler.sample_trajectories(env, n=batch, save_logprobs=True, epsilon=0.0)
    opt.zero_grad(); loss = gfn.loss(env, traj, recalculate_all_logprobs=False)
    loss.backward(); opt.step()
    return int(traj.terminating_idx.sum())
for _ in range(warmup):
    step()
rates, lengths = [], []
for _ in range(blocks):
    start, transitions = time.perf_counter(), 0
    for _ in range(block_iters):
        transitions += step()
    rates.append(transitions / (time.perf_counter() - start))
    lengths.append(transitions / (batch * block_iters))
print(json.dumps({"rates": rates, "length": statistics.mean(lengths)}))
"""


def run_torchgfn(
    python: str, warmup: int, blocks: int, block_iters: int, batch: int
) -> dict[str, Any] | None:
    """torchgfn's TB on the same configuration in ``python``, or None when unavailable."""
    if not os.path.exists(python):
        return None
    probe = subprocess.run([python, "-c", "import gfn"], capture_output=True)
    if probe.returncode != 0:
        return None
    out = subprocess.run(
        [python, "-c", ANCHOR_SCRIPT, str(warmup), str(blocks), str(block_iters), str(batch)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if out.returncode != 0:
        print(f"torchgfn run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values) / 1e3:6.1f} k [{min(values) / 1e3:.1f}–{max(values) / 1e3:.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(FLOORS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--block-iters", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="30 warm-up, 3 blocks of 5")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each MLP timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--anchor-python", default="/tmp/anchor-venv/bin/python")
    parser.add_argument("--no-anchor", action="store_true", help="skip torchgfn")
    parser.add_argument("--profile", default=None, help="cProfile one timed block of this preset")
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.blocks, args.block_iters = 30, 3, 5
    torch.set_num_threads(1)
    print(
        f"HyperGrid 2x64 R0=0.01, batch {args.batch_size}, MLP 4x256 (value 2x256), "
        f"threads={torch.get_num_threads()}, warm-up {args.warmup} iterations, "
        f"{args.blocks} blocks of {args.block_iters}; torch {torch.__version__}"
    )

    results = {}
    for name in args.presets:
        t0 = time.perf_counter()
        results[name] = time_agent(
            name,
            args.batch_size,
            args.warmup,
            args.blocks,
            args.block_iters,
            args.seed,
            args.repeats,
        )
        print(f"  timed {name} in {time.perf_counter() - t0:.0f} s", flush=True)

    anchor = None
    if not args.no_anchor:
        anchor = run_torchgfn(
            args.anchor_python, args.warmup, args.blocks, args.block_iters, args.batch_size
        )

    print(
        f"\n{'agent':<8} {'transitions/s':>22} {'len':>5} {'b':>5} {'N':>6} {'U/N':>4} "
        f"{'floor/s':>8} {'of floor':>16} {'target':>7}"
    )
    for name, r in results.items():
        share = statistics.median(r["shares"])
        target = TARGETS.get(name)
        verdict = "" if target is None else ("ok" if share >= target else f"<{target:.0%}")
        shares = f"{share:.0%} [{min(r['shares']):.0%}–{max(r['shares']):.0%}]"
        print(
            f"{name:<8} {fmt(r['rates']):>22} {r['length']:>5.1f} {r['rollout_batch']:>5.0f} "
            f"{r['flat_batch']:>6.0f} {r['distinct']:>4.0%} "
            f"{statistics.median(r['floors']) / 1e3:>7.1f}k "
            f"{shares:>16} {verdict:>7}"
        )
    if anchor is not None:
        print(
            f"{'torchgfn':<8} {fmt(anchor['rates']):>22} {anchor['length']:>5.1f}  (TB, learned P_B)"
        )
        if "TB" in results:
            ratio = statistics.median(results["TB"]["rates"]) / statistics.median(anchor["rates"])
            print(f"TB / torchgfn TB: {ratio:.2f}x (target >= 1.0x)")
    else:
        print("torchgfn not available (see --anchor-python); no anchor ratio")

    if "RL-T" in results:
        r = results["RL-T"]
        shares = r["distinct_shares"]
        print(
            f"RL-T against the floor with its step's passes at the U distinct rows: "
            f"{statistics.median(shares):.0%} [{min(shares):.0%}–{max(shares):.0%}]"
        )
        traj = on_policy_batch(r["agent"])
        unique = len(distinct_states(traj.obs, traj.masks)[0])
        costs = fisher_costs(traj, max(args.repeats, 5), args.seed)
        print(
            f"\nRL-T's network work on one batch, N = {len(traj.obs)}, U = {unique} "
            f"(median of {max(args.repeats, 5)}):"
        )
        for name, seconds in costs.items():
            print(
                f"  {name:<22} {seconds * 1e3:7.1f} ms  {seconds / costs['fwd+bwd']:.2f}x fwd+bwd"
            )

    if args.profile:
        agent = results[args.profile]["agent"] if args.profile in results else None
        if agent is None:
            agent = build(args.profile, args.batch_size, args.seed)
            agent.learn(total_trajectories=args.batch_size * args.warmup)
        profiler = cProfile.Profile()
        profiler.enable()
        agent.learn(
            total_trajectories=args.batch_size * args.block_iters, reset_num_timesteps=False
        )
        profiler.disable()
        for order, lines in (("tottime", 15), ("cumtime", 30)):
            print(f"\ncProfile of {args.block_iters} iterations of {args.profile} ({order}):")
            pstats.Stats(profiler).sort_stats(order).print_stats(lines)


if __name__ == "__main__":
    main()
