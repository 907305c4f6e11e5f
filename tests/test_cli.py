"""The command line: ``gfn-train`` / ``gfn-eval`` results, argument parsing, periodic checkpoints,
exact resumption, SIGINT / SIGTERM, logging, and a ``--help`` that does not import torch."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from gfn_agents import GFlowNetAlgorithm, evaluate_sampler, make_agent
from gfn_agents.callbacks import PeriodicCheckpoint
from gfn_agents.cli import eval_main, parse_pairs, parse_train_args, train_main, train_parser

GRID = ["--env-kwargs", "ndim=2", "height=6", "R0=0.05"]
SMALL = ["--batch-size", "16", "--net-arch", "16,16", "--agent-kwargs", "value_net_arch=(16,)"]
BIN = Path(sys.executable).parent


def same_parameters(a: GFlowNetAlgorithm, b: GFlowNetAlgorithm) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.networks.parameters(), b.networks.parameters(), strict=True)
    )


# ---------------------------------------------------------------------------- results
def test_gfn_train_saves_a_checkpoint_that_gfn_eval_scores_exactly(
    tmp_path: Path, capsys: Any
) -> None:
    """``gfn-train`` trains and saves; ``gfn-eval --json`` prints the exact metrics of the loaded
    agent, which are those of ``evaluate_sampler`` on the same checkpoint."""
    path = str(tmp_path / "run.zip")
    argv = ["RL-B", "HyperGrid-v0", *GRID, "--trajectories", "64", *SMALL]
    argv += ["--eval-freq", "2", "--save", path]
    assert train_main(argv) == 0
    assert "trajectories" in capsys.readouterr().out
    assert eval_main([path, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    agent = GFlowNetAlgorithm.load(path)
    assert printed["algorithm"] == "PolicyGradientGFN" and printed["trajectories"] == 64
    assert printed["env_kwargs"] == {"ndim": 2, "height": 6, "R0": 0.05}
    assert printed["tv"] == pytest.approx(evaluate_sampler(agent)["tv"], rel=1e-12)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["RL-X", "HyperGrid-v0"], "invalid choice: 'RL-X'"),
        (["RL-U", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
        (["RL-U", "CartPole-v1"], "not a gfn_envs task"),
        (["RL-U", "HyperGrid-v0", "--env-kwargs", "height"], "must be key=value pairs"),
        (["RL-U", "HyperGrid-v0", "--lr", "-1"], "learning_rate must be a positive number"),
        (["RL-U", "HyperGrid-v0", "--net-arch", "64,x"], "--net-arch must be comma-separated"),
        (["RL-U", "HyperGrid-v0", "--device", "gpu"], "device must be"),
        (["RL-U", "HyperGrid-v0", "--save-freq", "5"], "--save-freq needs --save PATH"),
        (["RL-U", "HyperGrid-v0", "--log-interval", "0"], "--log-interval must be >= 1"),
        (["RL-U"], "give PRESET and ENV_ID, or --resume PATH"),
        (["--resume", "nope"], "no file at 'nope' (nor 'nope.zip')"),
    ],
)
def test_gfn_train_rejects_bad_arguments_with_usage_errors(
    argv: list[str], words: str, capsys: Any
) -> None:
    with pytest.raises(SystemExit) as exc:
        train_main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and words in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_an_unavailable_device_is_a_usage_error(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        train_main(["RL-U", "HyperGrid-v0", "--device", "cuda"])
    assert exc.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_gfn_eval_rejects_a_corrupt_or_missing_checkpoint(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "bad.zip").write_bytes(b"junk")
    with pytest.raises(SystemExit):
        eval_main([str(tmp_path / "bad.zip")])
    assert "is damaged or not a gfn-gym checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        eval_main([str(tmp_path / "nope.zip")])
    err = capsys.readouterr().err
    assert "no file at" in err and "nope.zip'" in err and "nope.zip.zip" not in err


# ---------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "argv",
    [
        ["--env-kwargs", "ndim=2", "height=8", "RL-U", "HyperGrid-v0"],
        ["RL-U", "--env-kwargs", "ndim=2", "height=8", "HyperGrid-v0"],
        ["RL-U", "HyperGrid-v0", "--env-kwargs", "ndim=2", "height=8"],
        ["--env-kwarg", "ndim=2", "RL-U", "--env-kwarg", "height=8", "HyperGrid-v0"],
        ["--env-kwargs=ndim=2", "--env-kwargs", "height=8", "RL-U", "HyperGrid-v0"],
        ["--env-kwargs", "ndim=2", "height=8", "--", "RL-U", "HyperGrid-v0"],
        [
            "--env-kwargs",
            "ndim=2",
            "--seed",
            "0",
            "--env-kwargs",
            "height=8",
            "RL-U",
            "HyperGrid-v0",
        ],
    ],
)
def test_positionals_work_in_any_order(argv: list[str]) -> None:
    """A pair list ends at the first argument that is not KEY=VALUE, so no positional is
    swallowed; ``--env-kwarg`` repeats; ``--`` ends the options."""
    args = parse_train_args(train_parser(), argv)
    assert (args.preset, args.env_id) == ("RL-U", "HyperGrid-v0")
    assert parse_pairs(args.env_kwargs, "--env-kwargs") == {"ndim": 2, "height": 8}


def test_pair_values_are_python_literals_or_strings() -> None:
    pairs = ["a=1", "b=(64, 64)", "c=cosine", "d=0.5"]
    assert parse_pairs(pairs, "x") == {"a": 1, "b": (64, 64), "c": "cosine", "d": 0.5}


def test_help_shows_defaults_and_imports_no_torch() -> None:
    """``--help`` parses only: neither torch, SB3, gymnasium nor gfn_envs is imported."""
    code = (
        "import sys, contextlib, io\n"
        "from gfn_agents.cli import train_main, eval_main\n"
        "out = io.StringIO()\n"
        "for main in (train_main, eval_main):\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try: main(['--help'])\n"
        "        except SystemExit: pass\n"
        "heavy = [m for m in ('torch', 'stable_baselines3', 'gymnasium', 'gfn_envs') if m in sys.modules]\n"
        "print(repr(heavy)); print(out.getvalue())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    first, _, text = result.stdout.partition("\n")
    assert first == "[]"
    assert "(default: 10000)" in text and "(default: cpu)" in text and "(default: 10)" in text
    assert "130 after SIGINT" in text and "usage: gfn-eval" in text


# ---------------------------------------------------------------------------- resuming
def test_resume_continues_exactly_to_the_new_total(tmp_path: Path, capsys: Any) -> None:
    """``--resume`` from a 48-trajectory checkpoint to 96 gives the parameters and counters of a
    straight 96-trajectory run."""
    base = ["RL-G", "HyperGrid-v0", *GRID, *SMALL]
    straight, half, resumed = (str(tmp_path / f"{n}.zip") for n in ("straight", "half", "resumed"))
    assert train_main([*base, "--trajectories", "96", "--save", straight]) == 0
    assert train_main([*base, "--trajectories", "48", "--save", half]) == 0
    assert train_main(["--resume", half, "--trajectories", "96", "--save", resumed]) == 0
    a, b = GFlowNetAlgorithm.load(straight), GFlowNetAlgorithm.load(resumed)
    assert same_parameters(a, b) and (a.num_timesteps, a.iteration) == (
        b.num_timesteps,
        b.iteration,
    )
    assert "RL-G" not in capsys.readouterr().out.splitlines()[-3]  # resumed runs name the class
    assert train_main(["RL-G", "HyperGrid-v0", "--resume", resumed, "--trajectories", "96"]) == 0
    assert "already holds 96 trajectories" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--lr", "0.1"], "--lr cannot change a resumed run"),
        (["--env-kwargs", "height=8"], "--env-kwargs cannot change a resumed run"),
        (["TB"], "holds a PolicyGradientGFN that is not TB"),
        (["RL-U"], "holds a PolicyGradientGFN that is not RL-U"),
        (["RL-G", "BitSequence-v0"], "was trained on gfn_envs/HyperGrid-v0, not on BitSequence-v0"),
    ],
)
def test_resume_refuses_changes_to_the_run(
    tmp_path: Path, extra: list[str], words: str, capsys: Any
) -> None:
    path = str(tmp_path / "run.zip")
    train_main(["RL-G", "HyperGrid-v0", *GRID, *SMALL, "--trajectories", "16", "--save", path])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        train_main([*extra, "--resume", path, "--trajectories", "32"])
    assert words in capsys.readouterr().err


def test_periodic_checkpoints_resume_exactly(tmp_path: Path) -> None:
    """``PeriodicCheckpoint`` saves at multiples of the agent's iteration; resuming from the last
    one (iteration 4) to 5 iterations equals a straight run of 5."""
    kwargs: dict[str, Any] = {"env_kwargs": {"ndim": 2, "height": 6}, "seed": 1}
    kwargs |= {"net_arch": (16,), "batch_size": 16}
    path = str(tmp_path / "periodic.zip")
    straight = make_agent("TB", "HyperGrid-v0", **kwargs)
    straight.learn(total_trajectories=80, callback=PeriodicCheckpoint(2, path))
    saved = GFlowNetAlgorithm.load(path)
    assert saved.iteration == 4
    saved.learn(total_trajectories=16, reset_num_timesteps=False)
    assert same_parameters(saved, straight)
    with pytest.raises(ValueError, match="save_freq must be a positive integer"):
        PeriodicCheckpoint(0, path)


# ---------------------------------------------------------------------------- signals
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_finishes_the_iteration_saves_and_exits_cleanly(
    tmp_path: Path, signum: int, status: int
) -> None:
    """A real ``gfn-train`` process gets the signal mid-run: it exits with 128 + the signal number,
    a one-line message and no traceback, and leaves a checkpoint of whole iterations that resumes
    exactly (equal to a straight run to the same total)."""
    path = tmp_path / "run.zip"
    argv = [str(BIN / "gfn-train"), "RL-U", "HyperGrid-v0", *GRID, *SMALL]
    argv += ["--trajectories", "100000000", "--save", str(path), "--save-freq", "1"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not path.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        process.send_signal(signum)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    name = signal.Signals(signum).name
    match = re.search(rf"stopped by {name} after (\d+) trajectories; checkpoint written to", err)
    assert match is not None, err
    agent = GFlowNetAlgorithm.load(path)
    assert agent.num_trajectories == int(match.group(1)) == 16 * agent.iteration >= 16
    total = str(agent.num_trajectories + 32)
    resumed, straight = str(tmp_path / "resumed.zip"), str(tmp_path / "straight.zip")
    assert train_main(["--resume", str(path), "--trajectories", total, "--save", resumed]) == 0
    argv = ["RL-U", "HyperGrid-v0", *GRID, *SMALL, "--trajectories", total, "--save", straight]
    assert train_main(argv) == 0
    assert same_parameters(GFlowNetAlgorithm.load(resumed), GFlowNetAlgorithm.load(straight))
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


# ---------------------------------------------------------------------------- logging
def test_log_dir_holds_every_evaluation_and_the_final_one(tmp_path: Path, capsys: Any) -> None:
    argv = ["RL-U", "HyperGrid-v0", *GRID, *SMALL, "--trajectories", "64", "--eval-freq", "3"]
    assert train_main([*argv, "--log-dir", str(tmp_path), "--log-interval", "2"]) == 0
    with open(tmp_path / "progress.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["eval/tv"]]
    assert [row["eval/trajectories"] for row in rows] == ["0", "48", "64"]
    table = capsys.readouterr().out
    final_tv = float(rows[-1]["eval/tv"])
    assert f"{64:>12} " in table and f"{final_tv:>8.4f}" in table


def test_verbose_prints_a_short_run(capsys: Any) -> None:
    argv = ["RL-U", "HyperGrid-v0", *GRID, *SMALL, "--trajectories", "32", "--verbose", "1"]
    assert train_main(argv) == 0
    assert "time/" in capsys.readouterr().out
