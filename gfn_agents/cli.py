"""Command-line entry points ``gfn-train`` and ``gfn-eval``.

``gfn-train PRESET ENV_ID`` trains a preset (``RL-U``, ``RL-B``, ``RL-G``, ``RL-T``, ``TB``, ``DB``,
``SubTB``, …) on a registered env id, prints the exact metrics of the trained sampler (when the task
is enumerable) and saves a checkpoint::

    gfn-train RL-G HyperGrid-v0 --env-kwargs ndim=2 height=16 R0=0.01 \\
        --trajectories 20000 --eval-freq 20 --save runs/rlg.zip

``gfn-eval CHECKPOINT`` loads a checkpoint (the env is rebuilt from the saved id and kwargs) and
prints its exact metrics, or sampled statistics for a task too large to enumerate.

``key=value`` pairs are parsed as Python literals (``ndim=2``, ``R0=0.01``, ``net_arch=(64,64)``)
and fall back to strings (``reward=cosine``). Ids may omit the ``gfn_envs/`` namespace.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

import torch
from gymnasium.envs.registration import registry

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_agents import PRESETS, ExactEvalCallback, GFlowNetAlgorithm, evaluate_sampler, make_agent

NAMESPACE = "gfn_envs/"


def parse_pairs(pairs: Sequence[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b=(64, 64)", "c=cosine"]`` → ``{"a": 1, "b": (64, 64), "c": "cosine"}``."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{what} must be key=value pairs, got {pair!r}")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key] = raw
    return out


def resolve_env_id(env_id: str) -> str:
    """The registered id, accepting ``HyperGrid-v0`` for ``gfn_envs/HyperGrid-v0``."""
    if env_id in registry:
        return env_id
    if NAMESPACE + env_id in registry:
        return NAMESPACE + env_id
    known = sorted(k for k in registry if k.startswith(NAMESPACE))
    raise ValueError(f"unknown env id {env_id!r}; registered gfn_envs ids: {known}")


def _enumerable(agent: GFlowNetAlgorithm) -> bool:
    return bool(getattr(agent.task, "enumerable", False))


def _format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def report(agent: GFlowNetAlgorithm, samples: int) -> dict[str, float]:
    """Exact metrics on an enumerable task, else statistics of ``samples`` sampled objects."""
    if _enumerable(agent):
        return evaluate_sampler(agent)
    objects = agent.sample(samples)
    log_rewards = agent.task.log_reward(objects).double()
    return {
        "samples": float(samples),
        "mean_log_reward": float(log_rewards.mean()),
        "max_log_reward": float(log_rewards.max()),
        "log_z": agent.log_z,
    }


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfn-train",
        description="Train a GFlowNet preset on a registered gfn_envs id and save a checkpoint.",
    )
    parser.add_argument("preset", choices=sorted(PRESETS), help="agent preset")
    parser.add_argument("env_id", help="registered id, e.g. HyperGrid-v0 or gfn_envs/TFBind8-v0")
    parser.add_argument("--env-kwargs", nargs="*", metavar="KEY=VALUE", help="task kwargs")
    parser.add_argument("--trajectories", type=int, default=10_000, help="training budget")
    parser.add_argument("--batch-size", type=int, default=None, help="trajectories/iteration")
    parser.add_argument("--net-arch", type=str, default=None, help="hidden widths, e.g. 256,256")
    parser.add_argument("--lr", type=float, default=None, help="policy learning rate")
    parser.add_argument(
        "--agent-kwargs", nargs="*", metavar="KEY=VALUE", help="further agent kwargs"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest)")
    parser.add_argument(
        "--eval-freq", type=int, default=0, help="exact evaluation every N iterations (0: off)"
    )
    parser.add_argument("--tv-threshold", type=float, default=None, help="stop at this exact TV")
    parser.add_argument("--samples", type=int, default=10_000, help="draws when not enumerable")
    parser.add_argument("--save", default=None, help="checkpoint path (.zip)")
    parser.add_argument("--log-dir", default=None, help="csv and tensorboard logs")
    parser.add_argument("--verbose", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gfn-train``; returns the exit status."""
    parser = train_parser()
    args = parser.parse_args(argv)
    callback: ExactEvalCallback | None = None
    try:
        env_id = resolve_env_id(args.env_id)
        env_kwargs = parse_pairs(args.env_kwargs, "--env-kwargs")
        kwargs = parse_pairs(args.agent_kwargs, "--agent-kwargs")
        if args.batch_size is not None:
            kwargs["batch_size"] = args.batch_size
        if args.lr is not None:
            kwargs["learning_rate"] = args.lr
        if args.net_arch is not None:
            try:
                kwargs["net_arch"] = tuple(int(w) for w in args.net_arch.split(","))
            except ValueError:
                raise ValueError(
                    f"--net-arch must be comma-separated widths, got {args.net_arch!r}"
                ) from None
        if args.eval_freq < 0:
            raise ValueError(f"--eval-freq must be >= 0, got {args.eval_freq}")
        torch.set_num_threads(args.threads)
        agent = make_agent(
            args.preset,
            env_id,
            env_kwargs=env_kwargs,
            seed=args.seed,
            device=args.device,
            verbose=args.verbose,
            tensorboard_log=args.log_dir,
            **kwargs,
        )
        if args.eval_freq > 0 or args.tv_threshold is not None:
            if not _enumerable(agent):
                raise ValueError("--eval-freq/--tv-threshold need an enumerable task")
            callback = ExactEvalCallback(
                eval_freq=max(args.eval_freq, 1), tv_threshold=args.tv_threshold
            )
        agent.learn(
            total_trajectories=args.trajectories, callback=callback, progress_bar=args.progress
        )
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    if callback is not None:
        print(f"{'trajectories':>12} {'wall_s':>8} {'tv':>8} {'jsd':>8}")
        for row in callback.history:
            print(
                f"{row['trajectories']:>12.0f} {row['wall_time']:>8.1f} "
                f"{row['tv']:>8.4f} {row['jsd']:>8.4f}"
            )
    print(f"{args.preset} on {env_id}: {agent.num_trajectories} trajectories")
    print(_format_metrics(report(agent, args.samples)))
    if args.save:
        agent.save(args.save)
        print(f"saved {args.save}")
    return 0


def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfn-eval", description="Load a gfn-gym checkpoint and print its exact metrics."
    )
    parser.add_argument("checkpoint", help="path written by gfn-train --save or agent.save")
    parser.add_argument("--samples", type=int, default=10_000, help="draws when not enumerable")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gfn-eval``; returns the exit status."""
    parser = eval_parser()
    args = parser.parse_args(argv)
    try:
        agent = GFlowNetAlgorithm.load(args.checkpoint, device=args.device)
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    metrics = report(agent, args.samples)
    if args.json:
        out = {
            "algorithm": type(agent).__name__,
            "env_id": agent.env_id,
            "env_kwargs": agent.env_kwargs,
            "trajectories": agent.num_trajectories,
            **{k: (v if math.isfinite(v) else None) for k, v in metrics.items()},
        }
        print(json.dumps(out))
    else:
        print(
            f"{type(agent).__name__} on {agent.env_id} {agent.env_kwargs}: "
            f"{agent.num_trajectories} trajectories"
        )
        print(_format_metrics(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
