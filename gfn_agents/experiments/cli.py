"""``gfn-bench``: run experiment configs, report on them, list the shipped ones.

::

    gfn-bench run CONFIG... [--out DIR] [--jobs N] [--seeds S...] [--quick] [--print-commands]
    gfn-bench run-one CONFIG --agent LABEL --seed S [--out DIR] [--quick]
    gfn-bench report DIR... [--markdown PATH]
    gfn-bench list

``CONFIG`` is a TOML file or the name of a shipped config (``gfn-bench list``, e.g.
``paper/hypergrid-2x128``). ``run`` checks every config and existing run first, executes the runs
(``--jobs`` processes, ``--threads`` torch threads each), then writes each experiment's summary,
figures and report. ``--print-commands`` prints one ``run-one`` command per run instead, for a
scheduler; ``gfn-bench report`` then summarises the folder. ``report --markdown PATH`` also writes
the whole results document over all the given experiments, from experiment folders or from the
summary folders such a document keeps next to itself
(:mod:`gfn_agents.experiments.results`). Exit status: 0, 1 when a run failed or was
interrupted, 2 for a bad config or command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from gfn_agents.experiments.config import (
    SHIPPED,
    ConfigError,
    load_experiment,
    resolve_config,
    shipped_configs,
)
from gfn_agents.experiments.report import write_report
from gfn_agents.experiments.results import find_sources, write_results
from gfn_agents.experiments.runs import ConfigChanged
from gfn_agents.experiments.sweep import (
    Options,
    commands,
    experiment_dir,
    plan,
    run_command,
    run_jobs,
    write_experiment,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gfn-bench", description=__doc__.split("\n\n")[0])
    commands_ = parser.add_subparsers(dest="command", required=True)

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", default=None, help="output folder (default runs, or runs/quick)")
        p.add_argument("--quick", action="store_true", help="use the configs' [quick] budgets")
        p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
        p.add_argument("--device", default="cpu", help="torch device of the learners")
        p.add_argument(
            "--checkpoint-seconds",
            type=float,
            default=30.0,
            help="least seconds between periodic checkpoints (0: every evaluation)",
        )

    run = commands_.add_parser("run", help="run every agent and seed of the configs")
    run.add_argument("configs", nargs="+", metavar="CONFIG")
    run.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    run.add_argument("--seeds", type=int, nargs="+", default=None, help="replace the seeds")
    run.add_argument("--print-commands", action="store_true", help="print one command per run")
    run_options(run)

    one = commands_.add_parser("run-one", help="run one agent and seed of a config")
    one.add_argument("config", metavar="CONFIG")
    one.add_argument("--agent", required=True, help="the agent's label")
    one.add_argument("--seed", type=int, required=True)
    run_options(one)

    report = commands_.add_parser("report", help="summary, figures and report of run folders")
    report.add_argument(
        "directories",
        nargs="+",
        metavar="DIR",
        help="experiment folder(s), or folders holding them; with --markdown also the committed "
        "summary folders of a results document (docs/results)",
    )
    report.add_argument(
        "--markdown", default=None, help="also write the whole results document here"
    )

    commands_.add_parser("list", help="list the shipped configs")
    return parser


def _options(args: argparse.Namespace, seeds: Sequence[int] | None = None) -> Options:
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.checkpoint_seconds < 0:
        raise ValueError(f"--checkpoint-seconds must be >= 0, got {args.checkpoint_seconds}")
    try:
        device = torch.device(args.device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"--device must be like cpu, cuda or cuda:0, got {args.device!r}"
        ) from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {args.device}: CUDA is not available or has no such GPU")
    out = args.out or ("runs/quick" if args.quick else "runs")
    return Options(
        out=out,
        quick=args.quick,
        seeds=tuple(seeds) if seeds is not None else None,
        threads=args.threads,
        device=args.device,
        checkpoint_seconds=args.checkpoint_seconds,
    )


def _run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    options = _options(args, args.seeds)
    planned = plan([resolve_config(c) for c in args.configs], options)
    if args.print_commands:
        for config, (_, _, jobs) in zip(args.configs, planned, strict=True):
            print("\n".join(commands(config, jobs, options)))
        folders = " ".join(str(experiment_dir(e, options)) for e, _, _ in planned)
        print(f"# when they are done: gfn-bench report {folders}", file=sys.stderr)
        return 0
    for config, (experiment, exact, _) in zip(args.configs, planned, strict=True):
        write_experiment(experiment, exact, options, run_command(config, options))
    outcomes = run_jobs([job for _, _, jobs in planned for job in jobs], args.jobs)
    for experiment, _, _ in planned:
        directory = experiment_dir(experiment, options)
        write_report(directory)
        print(f"report: {directory / 'report.md'}")
    return 1 if any(o["status"] in ("failed", "interrupted") for o in outcomes) else 0


def _run_one(args: argparse.Namespace) -> int:
    options = _options(args)
    ((experiment, exact, jobs),) = plan([resolve_config(args.config)], options)
    matching = [job for job in jobs if job.label == args.agent]
    if not matching:
        raise ConfigError(
            experiment.path, "agents", f"no agent {args.agent!r}: {experiment.labels}"
        )
    write_experiment(experiment, exact, options, run_command(args.config, options))
    (outcome,) = run_jobs([dataclasses.replace(matching[0], seed=args.seed)])
    return 0 if outcome["status"] in ("finished", "skipped") else 1


def _report(args: argparse.Namespace) -> int:
    if args.markdown:
        write_results(find_sources(args.directories), Path(args.markdown))
        print(f"results: {args.markdown}")
    else:
        for directory in find_sources(args.directories, summaries=False):
            write_report(directory)
            print(f"report: {directory / 'report.md'}")
    return 0


def _list() -> int:
    shipped = shipped_configs()
    if not shipped:
        print(f"no shipped configs found (they live in {SHIPPED})")
        return 0
    for name, path in shipped.items():
        full, quick = load_experiment(path), load_experiment(path, quick=True)
        budget = f"{full.budget.trajectories:,} traj (quick {quick.budget.trajectories:,})"
        agents = ",".join(full.labels)
        print(f"{name:<28} {full.env_id.removeprefix('gfn_envs/'):<20} {budget:<30} {agents}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``gfn-bench``; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "run-one":
            return _run_one(args)
        if args.command == "report":
            return _report(args)
        return _list()
    except (ConfigError, ConfigChanged, ValueError) as exc:
        parser.exit(2, f"gfn-bench: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
