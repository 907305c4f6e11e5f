"""Command-line entry points ``gfn-train`` and ``gfn-eval``.

``gfn-train PRESET ENV_ID`` trains a preset (``RL-U``, ``RL-B``, ``RL-G``, ``RL-T``, ``TB``, ``DB``,
``SubTB``, …) on a registered env id, prints the exact metrics of the trained sampler (when the task
is enumerable) and saves a checkpoint::

    gfn-train RL-G HyperGrid-v0 --env-kwargs ndim=2 height=16 R0=0.01 \\
        --trajectories 20000 --eval-freq 20 --save runs/rlg.zip --save-freq 50
    gfn-train --resume runs/rlg.zip --trajectories 40000 --save runs/rlg.zip

``gfn-eval CHECKPOINT`` loads a checkpoint (the env is rebuilt from the saved id and kwargs) and
prints its exact metrics, or sampled statistics for a task too large to enumerate.

* ``key=value`` pairs are parsed as Python literals (``ndim=2``, ``R0=0.01``, ``net_arch=(64,64)``)
  and fall back to strings (``reward=cosine``). ``--env-kwargs`` takes several pairs and ends at
  the first argument that is not a pair, so positionals may follow it; ``--env-kwarg`` takes one
  and may be repeated. Ids may omit the ``gfn_envs/`` namespace.
* ``--resume PATH`` continues the checkpointed run, with its preset, env, hyperparameters and RNG
  state, until ``--trajectories`` in total: the result equals an uninterrupted run.
* SIGINT (Ctrl-C) or SIGTERM lets the current iteration finish, writes the checkpoint to
  ``--save`` and exits with a one-line message; a second signal aborts at once.
* Under ``torchrun`` every rank runs ``gfn-train`` with the same arguments and trains its share of
  each batch (docs/distributed.md); rank 0 alone prints, evaluates and writes checkpoints.
* Exit status: 0 when done; 2 for a usage error (a bad argument, an unreadable checkpoint, an
  unavailable device); 130 after SIGINT and 143 after SIGTERM (128 + the signal number, as a shell
  reports a process killed by that signal), so scripts can tell an interrupted run from a
  finished one.

The module imports torch only after the arguments are parsed, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import signal
import sys
from collections.abc import Sequence
from typing import Any

from gfn_agents.registry import PRESET_SPECS

PAIR_OPTIONS = ("--env-kwargs", "--agent-kwargs")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: …)`` for options that have a meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def split_pair_lists(argv: Sequence[str]) -> list[str]:
    """``--env-kwargs a=1 b=2 X`` → ``--env-kwargs a=1 --env-kwargs b=2 X``: a pair list ends at the
    first argument that is not ``KEY=VALUE`` (or at ``--``), so positionals may follow it."""
    out: list[str] = []
    option: str | None = None
    count = 0
    for i, token in enumerate(argv):
        if token == "--":
            return out + list(argv[i:])
        if token in PAIR_OPTIONS:
            if option is not None and count == 0:
                out.append(option)
            option, count = token, 0
            continue
        if option is not None and "=" in token and not token.startswith("-"):
            out += [option, token]
            count += 1
            continue
        if option is not None and count == 0:
            out.append(
                option
            )  # no pair followed: argparse takes the next argument and we refuse it
        option = None
        out.append(token)
    if option is not None and count == 0:
        out.append(option)
    return out


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


def _enumerable(agent: Any) -> bool:
    return bool(getattr(agent.task, "enumerable", False))


def _format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def report(agent: Any, samples: int) -> dict[str, float]:
    """Exact metrics on an enumerable task, else statistics of ``samples`` sampled objects."""
    from gfn_agents.evaluation import evaluate_sampler

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


def _add_pairs(parser: argparse.ArgumentParser, what: str, help: str) -> None:
    """``--WHAT-kwargs`` (several pairs, see :func:`split_pair_lists`) and ``--WHAT-kwarg`` (one,
    repeatable), collected in ``args.WHAT_kwargs``."""
    parser.add_argument(
        f"--{what}-kwargs",
        f"--{what}-kwarg",
        dest=f"{what}_kwargs",
        action="append",
        metavar="KEY=VALUE",
        help=f"{help} (or repeat --{what}-kwarg KEY=VALUE)",
    )


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfn-train",
        description="Train a GFlowNet preset on a registered gfn_envs id and save a checkpoint.",
        epilog="Exit status: 0 done, 2 usage error, 130 after SIGINT, 143 after SIGTERM (the "
        "current iteration finishes and --save is written first).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "preset",
        nargs="?",
        choices=sorted(PRESET_SPECS),
        metavar="PRESET",
        help=f"agent preset: {', '.join(PRESET_SPECS)}",
    )
    parser.add_argument(
        "env_id", nargs="?", metavar="ENV_ID", help="registered id, e.g. HyperGrid-v0"
    )
    _add_pairs(parser, "env", "task kwargs, e.g. --env-kwargs ndim=2 height=8")
    parser.add_argument("--trajectories", type=int, default=10_000, help="total training budget")
    parser.add_argument("--batch-size", type=int, help="trajectories per iteration")
    parser.add_argument("--net-arch", type=str, help="hidden widths, e.g. 256,256")
    parser.add_argument("--lr", type=float, help="policy learning rate")
    _add_pairs(parser, "agent", "further agent kwargs, e.g. --agent-kwargs gae_lambda=0.9")
    parser.add_argument("--seed", type=int, default=0, help="seed (a resumed run keeps its RNG)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest)")
    parser.add_argument(
        "--eval-freq", type=int, default=0, help="exact evaluation every N iterations (0: off)"
    )
    parser.add_argument("--tv-threshold", type=float, help="stop at this exact TV")
    parser.add_argument("--samples", type=int, default=10_000, help="draws when not enumerable")
    parser.add_argument("--save", metavar="PATH", help="checkpoint path (.zip)")
    parser.add_argument(
        "--save-freq", type=int, default=0, help="also save to --save every N iterations (0: off)"
    )
    parser.add_argument("--resume", metavar="PATH", help="continue the run saved in PATH")
    parser.add_argument("--log-dir", help="directory for csv and tensorboard logs")
    parser.add_argument(
        "--log-interval",
        type=int,
        default=10,
        help="log the training statistics every N iterations",
    )
    parser.add_argument("--verbose", type=int, default=0, help="1: log to stdout")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    return parser


def _check_counts(args: argparse.Namespace) -> None:
    for name in ("trajectories", "threads", "log_interval", "samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("eval_freq", "save_freq"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.save_freq and not args.save:
        raise ValueError("--save-freq needs --save PATH")


def _agent_kwargs(args: argparse.Namespace) -> dict[str, Any]:
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
    return kwargs


def _resume(args: argparse.Namespace) -> Any:
    """The agent saved in ``--resume``, checked against the preset and id given (if any)."""
    from gfn_agents.base import GFlowNetAlgorithm
    from gfn_agents.envspec import resolve_env_id

    changed = [
        option
        for option, value in (
            ("--env-kwargs", args.env_kwargs),
            ("--agent-kwargs", args.agent_kwargs),
            ("--batch-size", args.batch_size),
            ("--net-arch", args.net_arch),
            ("--lr", args.lr),
        )
        if value is not None
    ]
    if changed:
        raise ValueError(f"{', '.join(changed)} cannot change a resumed run; drop them or --resume")
    agent = GFlowNetAlgorithm.load(
        args.resume, device=args.device, verbose=args.verbose, tensorboard_log=args.log_dir
    )
    if args.preset is not None:
        class_name, preset = PRESET_SPECS[args.preset]
        saved = agent._hyperparameters()
        if type(agent).__name__ != class_name or any(saved.get(k) != v for k, v in preset.items()):
            raise ValueError(
                f"{args.resume} holds a {type(agent).__name__} that is not {args.preset}"
            )
    if args.env_id is not None and resolve_env_id(args.env_id) != agent.env_id:
        raise ValueError(f"{args.resume} was trained on {agent.env_id}, not on {args.env_id}")
    return agent


def _build(args: argparse.Namespace) -> tuple[Any, list[Any]]:
    """The agent (new or resumed) and the callbacks of this run."""
    import torch

    from gfn_agents import make_agent
    from gfn_agents.callbacks import PeriodicCheckpoint
    from gfn_agents.evaluation import ExactEvalCallback
    from gfn_agents.validation import check_device

    _check_counts(args)
    check_device(args.device)
    torch.set_num_threads(args.threads)
    if args.resume is not None:
        agent = _resume(args)
    elif args.preset is None or args.env_id is None:
        raise ValueError("give PRESET and ENV_ID, or --resume PATH")
    else:
        agent = make_agent(
            args.preset,
            args.env_id,
            env_kwargs=parse_pairs(args.env_kwargs, "--env-kwargs"),
            seed=args.seed,
            device=args.device,
            verbose=args.verbose,
            tensorboard_log=args.log_dir,
            **_agent_kwargs(args),
        )
    callbacks: list[Any] = []
    if args.eval_freq > 0 or args.tv_threshold is not None:
        if not _enumerable(agent):
            raise ValueError("--eval-freq/--tv-threshold need an enumerable task")
        callbacks.append(
            ExactEvalCallback(eval_freq=max(args.eval_freq, 1), tv_threshold=args.tv_threshold)
        )
    if args.save_freq:
        callbacks.append(PeriodicCheckpoint(args.save_freq, args.save))
    return agent, callbacks


def parse_train_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """``gfn-train``'s arguments: pair lists split (:func:`split_pair_lists`), then options and
    positionals parsed in any order."""
    return parser.parse_intermixed_args(split_pair_lists(sys.argv[1:] if argv is None else argv))


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gfn-train``; returns the exit status (see the module docstring)."""
    parser = train_parser()
    args = parse_train_args(parser, argv)
    try:
        return _train(parser, args)
    except KeyboardInterrupt:
        print("gfn-train: aborted; nothing more was written", file=sys.stderr)
        return 128 + signal.SIGINT


def _train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        agent, callbacks = _build(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    from gfn_agents.callbacks import GracefulStop

    name = args.preset or type(agent).__name__
    saved = args.save if args.save is None or args.save.endswith(".zip") else args.save + ".zip"
    with GracefulStop() as stop:
        remaining = args.trajectories - agent.num_trajectories
        if remaining > 0:
            agent.learn(
                total_trajectories=remaining,
                callback=[stop, *callbacks],
                log_interval=args.log_interval,
                progress_bar=args.progress,
                reset_num_timesteps=False,
            )
        elif agent.is_main:
            print(f"{args.resume} already holds {agent.num_trajectories} trajectories")
        if args.save:
            agent.save(args.save)  # rank 0 writes; the other ranks of a torchrun job return
    if not agent.is_main:  # rank 0 reports for every rank
        return 0 if stop.signum is None else 128 + stop.signum
    if stop.signum is not None:
        what = f"checkpoint written to {saved}" if saved else "no --save given, nothing written"
        print(
            f"gfn-train: stopped by {signal.Signals(stop.signum).name} after "
            f"{agent.num_trajectories} trajectories; {what}",
            file=sys.stderr,
        )
        return 128 + stop.signum
    history = next((cb.history for cb in callbacks if hasattr(cb, "history")), None)
    if history is not None:
        print(f"{'trajectories':>12} {'wall_s':>8} {'tv':>8} {'jsd':>8}")
        for row in history:
            print(
                f"{row['trajectories']:>12.0f} {row['wall_time']:>8.1f} "
                f"{row['tv']:>8.4f} {row['jsd']:>8.4f}"
            )
    print(f"{name} on {agent.env_id}: {agent.num_trajectories} trajectories")
    print(_format_metrics(report(agent, args.samples)))
    if saved:
        print(f"saved {saved}")
    return 0


def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gfn-eval",
        description="Load a gfn-gym checkpoint and print its exact metrics.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("checkpoint", help="path written by gfn-train --save or agent.save")
    parser.add_argument("--samples", type=int, default=10_000, help="draws when not enumerable")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gfn-eval``; returns the exit status."""
    parser = eval_parser()
    args = parser.parse_args(argv)
    from gfn_agents.base import GFlowNetAlgorithm

    try:
        if args.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {args.samples}")
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
