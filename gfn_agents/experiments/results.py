"""The results document: one generated markdown file over many experiments.

:func:`write_results` writes the whole document (e.g. ``docs/results.md``; nothing in it is
edited by hand) from *sources*, each either

* an experiment folder of ``gfn-bench run`` (it holds ``experiment.json``): its summary and
  figures are regenerated (:func:`gfn_agents.experiments.report.write_report`) and copied, with
  ``summary.json``, to ``<stem>/<name>/`` next to the document (``docs/results/<name>/``); or
* such a copy, as committed in a repository (a folder with ``summary.json`` and the figures it
  lists): the document is regenerated from it alone, without the runs.

When one experiment name comes from both, the experiment folder wins; two experiment folders of
one name are an error. The document holds, in order:

1. how it was made, how to regenerate it, and a list of the experiments with their verdicts;
2. for HyperGrid experiments, the change of the reward bands, computed: each grid's target now
   (exact integer band tests) against the target of the earlier float64 band tests;
3. a pointer to the sample-efficiency comparison with the paper's code and torchgfn;
4. one section per experiment (:func:`gfn_agents.experiments.report.section`), shipped
   ``configs/paper`` first, then other shipped configs, then the rest, by name within each;
5. the claims table and the rule behind its verdicts;
6. the full-budget command of every shipped config, with its budget.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from gfn_agents.experiments.claims import RULE
from gfn_agents.experiments.config import SHIPPED, load_experiment, shipped_configs
from gfn_agents.experiments.files import read_json
from gfn_agents.experiments.report import mean_std, section, threshold_cell, write_report
from gfn_agents.experiments.sweep import EXPERIMENT
from gfn_envs.tasks.hypergrid import HyperGrid
from gfn_envs.unwrap import task_of

SUMMARY = "summary.json"
HYPERGRID = "gfn_envs/HyperGrid-v0"
EFFICIENCY = "benchmarks.md#sample-efficiency-against-the-papers-code-and-torchgfn"
"""The sample-efficiency comparison, relative to the repository's ``docs/`` folder."""


# ------------------------------------------------------------------------------------ sources
def find_sources(paths: Sequence[str | Path], summaries: bool = True) -> list[Path]:
    """Experiment folders (and, with ``summaries``, folders holding a ``summary.json``) that the
    paths are or hold one level down; a ValueError names a path that holds none."""
    markers = (EXPERIMENT, SUMMARY) if summaries else (EXPERIMENT,)
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if any((path / m).exists() for m in markers):
            found.append(path)
            continue
        inside = sorted(p for p in path.glob("*/") if any((p / m).exists() for m in markers))
        if not inside:
            raise ValueError(f"{path} holds no gfn-bench experiment ({' or '.join(markers)})")
        found += inside
    return found


def shipped_name(experiment: dict[str, Any]) -> str | None:
    """The shipped config name (``paper/tfbind8``) an experiment was run from, or None."""
    parts = Path(experiment["config"]).with_suffix("").parts
    if "configs" not in parts:
        return None
    name = "/".join(parts[len(parts) - parts[::-1].index("configs") :])
    return name if name in shipped_configs() else None


def _order(summary: dict[str, Any]) -> tuple[int, str]:
    name = shipped_name(summary["experiment"])
    group = 2 if name is None else 0 if name.startswith("paper/") else 1
    return group, summary["experiment"]["name"]


def load_sources(sources: Sequence[Path], assets: Path) -> list[dict[str, Any]]:
    """The summaries of the sources in document order; experiment folders are reported again and
    their figures and summary copied to ``assets/<name>/`` (module docstring)."""
    chosen: dict[str, tuple[Path, bool]] = {}
    for source in sources:
        is_run = (source / EXPERIMENT).exists()
        data = read_json(source / EXPERIMENT) if is_run else read_json(source / SUMMARY)
        name = (data if is_run else data["experiment"])["name"]
        if name in chosen and chosen[name][1]:
            if is_run:
                raise ValueError(
                    f"two experiment folders named {name!r}: {chosen[name][0]}, {source}"
                )
            continue
        chosen[name] = (source, is_run)
    summaries = []
    for name, (source, is_run) in chosen.items():
        target = assets / name
        if not is_run:
            summary = read_json(source / SUMMARY)
            missing = [f for f in summary["figures"] if not (source / f).exists()]
            if missing:
                raise ValueError(f"{source} lacks the figures its {SUMMARY} lists: {missing}")
        else:
            summary = write_report(source)
        if source.resolve() != target.resolve():
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for file in [*summary["figures"], SUMMARY]:
                shutil.copy2(source / file, target / file)
        summaries.append(summary)
    return sorted(summaries, key=_order)


# ------------------------------------------------------------------------- HyperGrid band change
def float64_band_log_rewards(task: HyperGrid) -> np.ndarray:
    """log R over ``task.terminal_states()`` as HyperGrid computed it before its band tests were
    exact: a_d = |x_d/(H−1) − 0.5| in float64, compared with 0.25, 0.3 and 0.4."""
    a = np.abs(task.terminal_states().cpu().numpy() / (task.height - 1) - 0.5)
    band1 = np.all(a > 0.25, axis=1)
    band2 = np.all((a > 0.3) & (a < 0.4), axis=1)
    return np.log(task.R0 + task.R1 * band1 + task.R2 * band2)


def band_change(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """For an ``"original"``-reward HyperGrid: log Z*, the number of cells of maximal reward,
    now and with the float64 bands, and the TV between the two targets; None for other tasks."""
    if env_id != HYPERGRID:
        return None
    task = task_of(gym.make(env_id, **env_kwargs))
    if not isinstance(task, HyperGrid) or task.reward != "original":
        return None
    new = task.true_distribution().cpu().numpy()
    old_log = float64_band_log_rewards(task)
    old = np.exp(old_log - old_log.max())
    old /= old.sum()
    return {
        "grid": " × ".join([str(task.height)] * task.ndim),
        "logz": task.log_partition(),
        "logz_float64": float(torch.logsumexp(torch.from_numpy(old_log), dim=0)),
        "maximal": int(task.modes().sum()),
        "maximal_float64": int(np.sum(old_log >= old_log.max() - 1e-6)),
        "tv": 0.5 * float(np.abs(new - old).sum()),
    }


def band_change_section(summaries: list[dict[str, Any]]) -> str:
    """The section on the HyperGrid band change for the HyperGrid experiments, or ''."""
    rows = []
    for summary in summaries:
        e = summary["experiment"]
        change = band_change(e["env"]["id"], e["env"]["kwargs"])
        if change is not None:
            rows.append(
                f"| {e['name']} | {change['grid']} | {change['logz']:.5f} | "
                f"{change['logz_float64']:.5f} | {change['maximal']} | "
                f"{change['maximal_float64']} | {change['tv']:.3f} |"
            )
    if not rows:
        return ""
    return "\n".join(
        [
            "## HyperGrid: the reward bands changed",
            "",
            "HyperGrid's reward tests a_d = |x_d/(H−1) − 0.5| against the band edges 0.25, 0.3 "
            "and 0.4. Earlier versions evaluated a_d in float64, where rounding at an edge puts "
            "mirror cells on different sides (on 16 × 16, x = 12 was inside the 0.3 edge while "
            "its mirror x = 3 was not): the reward was asymmetric, and on some grids it was not "
            "the task that the paper's code and torchgfn define (they compute in float32, where "
            "mirrors agree). Band membership is now decided in exact integer arithmetic on "
            "d = |2x − (H−1)|, symmetric by construction and equal to the reference code on "
            "every grid below. The table compares, for each HyperGrid experiment of this "
            "document, the target now with the target of the float64 bands (computed here, "
            "R0, R1 and R2 as in the experiment):",
            "",
            "| experiment | grid | log Z* now | log Z* with float64 bands | cells of maximal "
            "reward now | with float64 bands | TV between the two targets |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Tables measured before the change, such as the 2 × 16 comparison with SB3 baselines "
            "and the sample-efficiency comparison of earlier versions of this document, scored "
            "every sampler against the float64 target, and the paper's code and torchgfn against "
            "the symmetric one. Where the TV above is not 0 they are not comparable with the "
            "tables below, which were all measured on the current task.",
            "",
        ]
    )


# ------------------------------------------------------------------------------ other sections
def _best_final(summary: dict[str, Any], group: list[str]) -> str:
    """The group's agent with the best final mean of the claim's metric, as ``label: value``."""
    verdict = summary["claim"]
    finals = {}
    for label in group:
        stats = summary["agents"].get(label, {}).get("final", {}).get(verdict["metric"])
        if stats and stats["mean"] is not None:
            finals[label] = stats["mean"]
    if not finals:
        return "n/a"
    pick = min if verdict["direction"] == "<=" else max
    label = pick(finals, key=finals.__getitem__)
    return f"{label}: {mean_std(summary['agents'][label]['final'][verdict['metric']])}"


def claims_table(summaries: list[dict[str, Any]]) -> str:
    """One row per experiment with a claim: the two groups' best T, their best final value of
    the claim's metric (which shows the direction when no agent met the threshold), and the
    verdict."""
    lines = [
        "| experiment | claim | first group: best T | second group: best T | "
        "best final value: first group | second group | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for summary in summaries:
        verdict = summary["claim"]
        if verdict is None:
            continue
        op = "≤" if verdict["direction"] == "<=" else "≥"
        claim = (
            f"{' or '.join(verdict['better'])} before {', '.join(verdict['than'])} to "
            f"{verdict['metric']} {op} {verdict['threshold']:g}"
        )
        cells = []
        for key in ("best_better", "best_than"):
            label = verdict.get(key)
            times = summary["agents"][label]["to_threshold"] if label else None
            cells.append(f"{label}: {threshold_cell(times)}" if times else "n/a")
        cells += [_best_final(summary, verdict["better"]), _best_final(summary, verdict["than"])]
        name = summary["experiment"]["name"]
        lines.append(f"| {name} | {claim} | {' | '.join(cells)} | **{verdict['verdict']}** |")
    return "\n".join(lines)


def full_budget_table(summaries: list[dict[str, Any]]) -> str:
    """Every shipped config: its full-budget command and budget, and whether the document holds
    results at that budget."""
    ran = {shipped_name(s["experiment"]): s["experiment"]["budget"] for s in summaries}
    lines = [
        "| config | command | runs | trajectories per run, evaluated every | "
        "× the quick budget | results at this budget |",
        "|---|---|---|---|---|---|",
    ]
    for name, path in shipped_configs().items():
        full, quick = load_experiment(path), load_experiment(path, quick=True)
        runs = len(full.agents) * len(full.budget.seeds)
        scale = (full.budget.trajectories * len(full.budget.seeds)) / (
            quick.budget.trajectories * len(quick.budget.seeds)
        )
        budget = {
            "trajectories": full.budget.trajectories,
            "eval_every": full.budget.eval_every,
            "seeds": list(full.budget.seeds),
        }
        if name not in ran:
            results = "not run"
        elif ran[name] == budget:
            results = f"[{full.name}](#{full.name})"
        else:
            results = f"not run (quick budget: [{full.name}](#{full.name}))"
        lines.append(
            f"| `{name}` | `gfn-bench run {name}` | {len(full.agents)} agents × "
            f"{len(full.budget.seeds)} seeds = {runs} | {full.budget.trajectories:,}, "
            f"{full.budget.eval_every:,} | {scale:,.0f} | {results} |"
        )
    return "\n".join(lines)


def _intro(summaries: list[dict[str, Any]], path: Path, assets: Path) -> list[str]:
    quick = all(s["experiment"]["quick"] for s in summaries)
    contents = []
    for s in summaries:
        name = s["experiment"]["name"]
        verdict = f": claim *{s['claim']['verdict']}*" if s["claim"] else ""
        contents.append(f"* [{name}](#{name}){verdict}")
    scale = (
        "All of them ran at their configs' quick budgets, for the paper's experiments far "
        "below the paper's (the last table gives the factor); a claim that needs more "
        "training than that is marked *inconclusive at this budget*, not decided."
        if quick
        else "Each section states its budget."
    )
    return [
        "# Results",
        "",
        "This document is generated by `gfn-bench report` from the runs' outputs; no number in "
        "it is typed by hand, and it is not edited by hand. Per experiment, "
        f"`{assets.as_posix()}/<name>/{SUMMARY}` holds every number of its section, next to its "
        "figures. Regenerate it from those committed summaries, or from run folders (which "
        "also refreshes the summaries and figures):",
        "",
        "```bash",
        f"gfn-bench report {assets.as_posix()} --markdown {path.as_posix()}",
        f"gfn-bench report runs/quick --markdown {path.as_posix()}",
        "```",
        "",
        f"{scale} How to run an experiment and read its report: "
        f"[experiments.md]({_docs_link(path, 'experiments.md')}).",
        "",
        *contents,
        "",
    ]


def _docs_link(path: Path, page: str) -> str:
    """A link from the document to a page of the repository's ``docs/`` folder."""
    docs = SHIPPED.parent / "docs"
    return Path(os.path.relpath(docs / page, path.resolve().parent)).as_posix()


def write_results(sources: Sequence[Path], path: str | Path) -> list[dict[str, Any]]:
    """Write the results document ``path`` from the sources (module docstring); return the
    summaries in document order."""
    path = Path(path)
    assets = path.parent / path.stem
    summaries = load_sources(sources, assets)
    sections = [
        section(s, s["figures"], prefix=f"{assets.name}/{s['experiment']['name']}/")
        for s in summaries
    ]
    text = "\n".join(
        [
            *_intro(summaries, path, assets),
            band_change_section(summaries),
            "## Sample efficiency against the paper's code and torchgfn",
            "",
            "The comparison of our presets with the paper's code (GFN-PG) and torchgfn in the "
            "paper's sample-efficiency setting, on identical targets, is in "
            f"[benchmarks.md]({_docs_link(path, EFFICIENCY)}).",
            "",
            *sections,
            "## Claims",
            "",
            claims_table(summaries),
            "",
            f"How a verdict is reached: {RULE}",
            "",
            "## Full-budget commands",
            "",
            "The shipped configs at their full budgets (the paper's scale). Add `--jobs N` to run "
            "N runs at once, or `--print-commands` to get one command per run for a scheduler "
            "(see experiments.md); `× the quick budget` is the ratio of trajectories × seeds.",
            "",
            full_budget_table(summaries),
            "",
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return summaries
