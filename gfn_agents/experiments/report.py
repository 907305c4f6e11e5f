"""Reports: ``summary.json``, figures and ``report.md`` per experiment.

:func:`write_report` writes into an experiment folder:

* ``summary.json`` (:func:`gfn_agents.experiments.summary.summarize`);
* ``<metric>.png`` for the reported metrics (against trajectories and wall time) and, on 2-D
  grids, ``heatmaps.png`` (:mod:`gfn_agents.experiments.figures`);
* ``report.md``: the experiment's section (task, budget, command, machine, table, claim, figures).

:func:`section` is also the experiment's section of the results document
(:mod:`gfn_agents.experiments.results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gfn_agents.experiments.files import write_json
from gfn_agents.experiments.summary import (
    EXACT_FIGURES,
    EXACT_METRICS,
    SAMPLED_FIGURES,
    SAMPLED_METRICS,
    claim_of,
    load_runs,
    summarize,
)
from gfn_agents.experiments.sweep import TARGET

HEATMAPS = "heatmaps.png"


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def mean_std(stats: dict[str, float | None] | None) -> str:
    if not stats or stats["mean"] is None:
        return "n/a"
    std = stats["std"]
    if not std or std <= 5e-4 * abs(stats["mean"]):  # below the mean's 3 significant digits
        return _number(stats["mean"])
    return f"{_number(stats['mean'])} ± {f'{std:,.0f}' if std >= 100 else f'{std:.2g}'}"


def threshold_cell(times: dict[str, Any]) -> str:
    if not times["runs"]:
        return "n/a"
    if times["mean"] is not None:
        cell = f"{_number(times['mean'])} [{_number(times['min'])}–{_number(times['max'])}]"
    elif times["reached"]:
        cell = f"not on every seed (earliest {_number(times['min'])})"
    else:
        cell = "not reached"
    return f"{cell} ({times['reached']}/{times['runs']})"


def metrics_of(summary: dict[str, Any], plotted: bool = False) -> list[str]:
    """The metrics of the table (or of the figures) present in the summary, in report order."""
    exact = summary["experiment"]["exact"]
    if plotted:
        names = EXACT_FIGURES if exact else SAMPLED_FIGURES
    else:
        names = EXACT_METRICS if exact else SAMPLED_METRICS
    present = {k for agent in summary["agents"].values() for k in agent["final"]}
    return [m for m in names if m in present]


def table(summary: dict[str, Any]) -> str:
    """The experiment's markdown table: final metrics (mean ± std over seeds), trajectories,
    wall time, and trajectories to the claim's threshold."""
    metrics = metrics_of(summary)
    claim = summary["experiment"].get("claims")
    head = ["agent", "seeds", *metrics, "trajectories", "wall time (s)"]
    if claim is not None:
        op = "≤" if summary["claim"]["direction"] == "<=" else "≥"
        head.append(f"trajectories to {claim['metric']} {op} {claim['threshold']:g}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, agent in summary["agents"].items():
        final = agent["final"]
        seeds = ",".join(map(str, agent["seeds"])) or "none"
        if agent["unfinished"]:
            seeds += f" (unfinished: {','.join(map(str, agent['unfinished']))})"
        cells = [label, seeds, *(mean_std(final.get(m)) for m in metrics)]
        cells += [mean_std(final.get("trajectories")), mean_std(final.get("wall_time"))]
        if claim is not None:
            cells.append(threshold_cell(agent["to_threshold"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _claim_text(summary: dict[str, Any]) -> str:
    verdict = summary["claim"]
    if verdict is None:
        return ""
    op = "≤" if verdict["direction"] == "<=" else "≥"
    return (
        f"**Claim.** {' or '.join(verdict['better'])} reaches {verdict['metric']} {op} "
        f"{verdict['threshold']:g} in fewer trajectories than {', '.join(verdict['than'])}: "
        f"**{verdict['verdict']}** ({verdict['reason']})."
    )


def figures(directory: Path, summary: dict[str, Any]) -> list[str]:
    """Write the experiment's figures; return their file names (none without matplotlib)."""
    try:
        from gfn_agents.experiments import figures as fig
    except ImportError:
        return []
    experiment = summary["experiment"]
    labels = [a["label"] for a in experiment["agents"]]
    runs = {
        label: [r for r in group if r.finished]
        for label, group in load_runs(directory, labels).items()
    }
    claim = claim_of(experiment)
    written = []
    for metric in metrics_of(summary, plotted=True):
        name = f"{metric}.png"
        if fig.plot_metric(runs, metric, directory / name, experiment["name"], claim):
            written.append(name)
    if (directory / TARGET).exists():
        target = np.load(directory / TARGET)
        if fig.plot_heatmaps(directory, target, labels, directory / HEATMAPS):
            written.append(HEATMAPS)
    return written


def _share(sweep: dict[str, Any], threads: int) -> str:
    """The CPU share of the runs, which shows how busy the machine was."""
    if not sweep["run_seconds"]:
        return ""
    share = sweep["cpu_seconds"] / (sweep["run_seconds"] * threads)
    busy = " (a machine shared with other jobs)" if share < 0.8 else ""
    cores = "a core" if threads == 1 else f"{threads} cores"
    return f"; a run used {share:.0%} of {cores} on average{busy}"


def section(summary: dict[str, Any], images: list[str], prefix: str, level: int = 2) -> str:
    """The markdown section of one experiment; figure links are ``prefix + file name``."""
    e = summary["experiment"]
    budget, mach = e["budget"], e["machine"]
    kwargs = ", ".join(f"{k}={v!r}" for k, v in e["env"]["kwargs"].items())
    if e["exact"]:
        how = "exact metrics (the sampler's terminal distribution by dynamic programming)"
    else:
        ev = e["evaluation"]
        how = f"sampled metrics ({ev['samples']:,} draws per evaluation, top-k with k = {ev['top_k']})"
    sweep = summary["sweep"]
    lines = [
        f"{'#' * level} {e['name']}",
        "",
        *([e["description"], ""] if e["description"] else []),
        f"**Task.** `{e['env']['id']}` ({kwargs or 'defaults'}), {how}.",
        "",
        f"**Budget.** {budget['trajectories']:,} trajectories per run, evaluated every "
        f"{budget['eval_every']:,}; seeds {', '.join(map(str, budget['seeds']))}"
        f"{' (the quick budget)' if e['quick'] else ''}.",
        "",
        f"**Command.** `{e['command']}`",
        "",
        f"**Machine.** {mach['processor']}, {mach['cpus']} cores, {e['threads']} torch "
        f"thread(s) per run; the runs took {sweep['run_seconds']:,.0f} s "
        f"({sweep['cpu_seconds']:,.0f} CPU seconds) in all, from {sweep['started']} to "
        f"{sweep['ended']}{_share(sweep, e['threads'])}.",
        "",
        "Final metrics are mean ± std (population) over the finished seeds at the last "
        "evaluation; wall time is training time, evaluations excluded.",
        "",
        table(summary),
        "",
    ]
    if summary["claim"] is not None:
        lines += [_claim_text(summary), ""]
    lines += [f"![{name.removesuffix('.png')}]({prefix}{name})" for name in images]
    return "\n".join(lines).rstrip() + "\n"


def write_report(directory: str | Path) -> dict[str, Any]:
    """Write the figures, ``summary.json`` (with the figures' names under ``figures``) and
    ``report.md`` into an experiment folder; return the summary."""
    directory = Path(directory)
    summary = summarize(directory)
    images = figures(directory, summary)
    summary["figures"] = images
    write_json(directory / "summary.json", summary)
    text = f"# Report\n\n{section(summary, images, prefix='')}"
    if not images:
        text += "\n(no figures: install matplotlib, `pip install 'gfn-gym[viz]'`)\n"
    (directory / "report.md").write_text(text)
    return summary
