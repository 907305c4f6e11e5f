"""The sweep runner behind ``gfn-bench``: experiment configs, runs, summaries, reports, figures.

Read top to bottom:

* :mod:`~gfn_agents.experiments.config`: the TOML config format and its checks;
* :mod:`~gfn_agents.experiments.files`: JSON reading and atomic writes;
* :mod:`~gfn_agents.experiments.learners`: agents and SB3 baselines behind one training surface;
* :mod:`~gfn_agents.experiments.runs`: one run's folder, evaluation schedule, checkpoints, resume;
* :mod:`~gfn_agents.experiments.sweep`: planning every run up front and the process pool;
* :mod:`~gfn_agents.experiments.claims`: the rule that judges a claim from the curves;
* :mod:`~gfn_agents.experiments.summary`: final metrics over seeds per agent;
* :mod:`~gfn_agents.experiments.figures`: learning curves and 2-D heatmaps;
* :mod:`~gfn_agents.experiments.report`: ``summary.json``, figures and ``report.md`` per experiment;
* :mod:`~gfn_agents.experiments.results`: the results document over many experiments;
* :mod:`~gfn_agents.experiments.cli`: the ``gfn-bench`` command.
"""

from gfn_agents.experiments.config import ConfigError, Experiment, load_experiment
from gfn_agents.experiments.runs import RunJob, execute_run

__all__ = ["ConfigError", "Experiment", "RunJob", "execute_run", "load_experiment"]
