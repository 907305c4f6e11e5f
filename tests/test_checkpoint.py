"""Checkpoints and replay buffers that loading never turns into code execution, the env spec they
carry, and the messages of every refusal.

The malicious payloads are pickles whose loading would run ``touch MARKER`` (``os.system``) or
create a file (``builtins.open``); each test asserts the marker file was never created.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_agents import GFlowNetAlgorithm, PolicyGradientGFN, SoftDQN, make_agent
from gfn_agents.checkpoint import METADATA, TENSORS, from_json, to_json, upgrade_checkpoint
from gfn_agents.cli import eval_main
from gfn_envs.tasks.hypergrid import HyperGrid

ENV_ID = "gfn_envs/HyperGrid-v0"
GRID = {"ndim": 2, "height": 6, "R0": 0.1}
SMALL: dict[str, Any] = {"net_arch": (16, 16), "value_net_arch": (16,), "batch_size": 8}


class RunsCommand:
    """Unpickling this runs ``touch marker`` through ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class CreatesFile:
    """Unpickling this creates ``marker`` through ``builtins.open``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def torch_payload(payload: Any) -> bytes:
    """A genuine torch zip whose ``data.pkl`` names the payload's callable."""
    buffer = io.BytesIO()
    torch.save({"modules": payload, "rng": {}}, buffer)
    return buffer.getvalue()


def agent(seed: int = 0, **overrides: Any) -> GFlowNetAlgorithm:
    kwargs = {"env_kwargs": GRID, "seed": seed, **SMALL, **overrides}
    return make_agent("RL-G", ENV_ID, **kwargs)


def replace_member(src: Path, dst: Path, name: str, payload: bytes | None) -> None:
    """Copy checkpoint ``src`` to ``dst`` with member ``name`` replaced (or added, or removed when
    ``payload`` is None)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename != name:
                zout.writestr(item.filename, zin.read(item.filename))
        if payload is not None:
            zout.writestr(name, payload)


def edit_metadata(src: Path, dst: Path, edit: Any) -> None:
    with zipfile.ZipFile(src) as archive:
        metadata = json.loads(archive.read(METADATA))
    edit(metadata)
    replace_member(src, dst, METADATA, json.dumps(metadata).encode())


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "ok.zip"
    agent().learn(total_trajectories=16).save(path)
    return path


# ---------------------------------------------------------------------------- the file format
def test_a_checkpoint_is_json_metadata_and_weights_only_tensors(saved: Path) -> None:
    """Exactly two members; the metadata is plain JSON naming the format, the env spec and the
    hyperparameters (tuples tagged and restored); the tensors load with weights_only=True."""
    with zipfile.ZipFile(saved) as archive:
        assert sorted(archive.namelist()) == [METADATA, TENSORS]
        metadata = json.loads(archive.read(METADATA))
        tensors = torch.load(io.BytesIO(archive.read(TENSORS)), weights_only=True)
    assert metadata["format"] == "gfn-gym checkpoint" and metadata["format_version"] == 2
    assert metadata["algorithm"] == "PolicyGradientGFN" and metadata["num_trajectories"] == 16
    assert metadata["hyperparameters"]["net_arch"] == {"__tuple__": [16, 16]}
    assert "tensorboard_log" not in metadata["hyperparameters"]
    assert metadata["env"]["id"] == ENV_ID and metadata["env"]["kwargs"] == GRID
    fingerprint = metadata["env"]["fingerprint"]
    assert fingerprint["class"].endswith("HyperGrid") and fingerprint["state_shape"] == [2]
    assert len(fingerprint["probe_objects"]) == len(fingerprint["probe_log_rewards"]) == 8
    assert sorted(tensors) == ["modules", "rng"] and "networks" in tensors["modules"]
    loaded = PolicyGradientGFN.load(saved)
    assert loaded.net_arch == (16, 16) and loaded.num_trajectories == 16


def test_json_schema_round_trips_tuples_and_arrays_and_refuses_objects() -> None:
    value = {"a": (1, (2.5, "x")), "b": [None, True], "c": np.arange(3, dtype=np.int16)}
    back = from_json(json.loads(json.dumps(to_json(value, "value"))))
    assert back["a"] == (1, (2.5, "x")) and back["b"] == [None, True]
    assert back["c"].dtype == np.int16 and back["c"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"value\['f'\] is a builtin_function_or_method"):
        to_json({"f": print}, "value")
    with pytest.raises(ValueError, match="only finite floats"):
        to_json(float("nan"), "x")
    with pytest.raises(ValueError, match="not numeric"):
        from_json({"__ndarray__": [1], "dtype": "O"})


def test_env_kwargs_that_json_cannot_hold_are_a_clear_error_at_save(tmp_path: Path) -> None:
    bad = make_agent("RL-U", ENV_ID, env_kwargs=GRID, **SMALL)
    bad.env_kwargs = {**GRID, "reward_fn": len}
    with pytest.raises(ValueError, match=r"reward_fn.*builtin_function_or_method"):
        bad.save(tmp_path / "bad.zip")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------- malicious payloads
def _poisoned(saved: Path, marker: Path) -> dict[str, Path]:
    """One crafted file per member (and per way to smuggle an entry in), each of which would run
    the payload if anything unpickled it."""
    out = saved.parent
    files = {
        "metadata.json as a pickle": (METADATA, pickle.dumps(RunsCommand(marker))),
        "tensors.pt as a raw pickle": (TENSORS, pickle.dumps(RunsCommand(marker))),
        "tensors.pt data.pkl (os.system)": (TENSORS, torch_payload(RunsCommand(marker))),
        "tensors.pt data.pkl (open)": (TENSORS, torch_payload(CreatesFile(marker))),
        "an extra pickle member": ("payload.pkl", pickle.dumps(RunsCommand(marker))),
        "an SB3 data member": ("data", _sb3_serialized(RunsCommand(marker))),
    }
    paths = {}
    for i, (label, (member, payload)) in enumerate(files.items()):
        paths[label] = out / f"poisoned{i}.zip"
        replace_member(saved, paths[label], member, payload)
    paths["metadata.json with a pickled entry"] = out / "serialized.zip"
    edit_metadata(
        saved,
        paths["metadata.json with a pickled entry"],
        lambda m: m.update(format_version=1, hyperparameters=_sb3_entry(RunsCommand(marker))),
    )
    return paths


def _sb3_entry(payload: Any) -> dict[str, str]:
    import base64

    return {
        ":type:": "<class 'object'>",
        ":serialized:": base64.b64encode(pickle.dumps(payload)).decode(),
    }


def _sb3_serialized(payload: Any) -> bytes:
    return json.dumps({"policy_class": _sb3_entry(payload)}).encode()


@pytest.mark.parametrize("through", ["api", "gfn-eval"])
def test_no_crafted_member_is_ever_unpickled(
    saved: Path, tmp_path: Path, through: str, capsys: Any
) -> None:
    """Every crafted file is refused with a ValueError (gfn-eval: a usage error, exit 2) that
    says why, and the payload never runs."""
    marker = tmp_path / "PWNED"
    words = ("not JSON", "zip format", "only unpickling could rebuild", "unexpected member")
    for label, path in _poisoned(saved, marker).items():
        if through == "api":
            with pytest.raises(ValueError) as info:
                GFlowNetAlgorithm.load(path)
            message = str(info.value)
        else:
            with pytest.raises(SystemExit) as exit_info:
                eval_main([str(path)])
            assert exit_info.value.code == 2
            message = capsys.readouterr().err
        assert any(w in message for w in (*words, "checkpoint format 1")), (label, message)
        assert "Traceback" not in message
        assert not marker.exists(), label


def test_gfn_eval_console_script_refuses_a_payload(saved: Path, tmp_path: Path) -> None:
    """The installed ``gfn-eval`` command, in its own process, refuses the torch payload."""
    import subprocess
    import sys

    marker = tmp_path / "PWNED"
    path = tmp_path / "payload.zip"
    replace_member(saved, path, TENSORS, torch_payload(RunsCommand(marker)))
    script = Path(sys.executable).with_name("gfn-eval")
    result = subprocess.run([str(script), str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "only unpickling could rebuild" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


# ---------------------------------------------------------------------------- messages
def test_a_missing_file_names_the_path_the_user_gave(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no file at '.*nope\.zip'$"):
        PolicyGradientGFN.load(tmp_path / "nope.zip")
    with pytest.raises(FileNotFoundError, match=r"no file at '.*nope' \(nor '.*nope\.zip'\)"):
        PolicyGradientGFN.load(tmp_path / "nope")


def test_a_truncated_file_is_damaged(saved: Path, tmp_path: Path) -> None:
    data = saved.read_bytes()
    for size in (len(data) // 2, len(data) - 30, 10):
        (tmp_path / "cut.zip").write_bytes(data[:size])
        with pytest.raises(ValueError, match="damaged"):
            PolicyGradientGFN.load(tmp_path / "cut.zip")


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            lambda m: m.pop("num_trajectories"),
            "incomplete: metadata.json has no 'num_trajectories'",
        ),
        (lambda m: m.pop("env"), "incomplete: metadata.json has no 'env'"),
        (lambda m: m.pop("algorithm"), "incomplete: metadata.json has no 'algorithm'"),
        (lambda m: m["env"].pop("fingerprint"), "incomplete: its env spec needs"),
        (lambda m: m.pop("format_version"), "checkpoint format None"),
        (lambda m: m.pop("format"), "not a gfn-gym checkpoint"),
        (lambda m: m.update(iteration=-3), "iteration must be an integer >= 0"),
        (lambda m: m.update(hyperparameters=[1]), "hyperparameters and env kwargs must be objects"),
        (lambda m: m.update(algorithm="Nope"), "holds a Nope, not a GFlowNetAlgorithm"),
        (lambda m: m["hyperparameters"].update(gae_lamda=0.9), r"unknown keyword.*gae_lamda"),
        (lambda m: m["hyperparameters"].update(batch_size=0), "batch_size must be a positive"),
    ],
)
def test_incomplete_or_edited_metadata_is_a_value_error_naming_the_problem(
    saved: Path, tmp_path: Path, edit: Any, words: str
) -> None:
    edit_metadata(saved, tmp_path / "edited.zip", edit)
    with pytest.raises(ValueError, match=words):
        GFlowNetAlgorithm.load(tmp_path / "edited.zip")


@pytest.mark.parametrize(
    ("tensors", "words"),
    [
        ({"modules": {}}, "must hold 'modules' and 'rng'"),
        ({"modules": {}, "rng": {}}, "no 'generator' RNG state"),
        ({"modules": [], "rng": {}}, "not a dict of state dicts"),
    ],
)
def test_incomplete_tensors_are_a_value_error(
    saved: Path, tmp_path: Path, tensors: dict[str, Any], words: str
) -> None:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    replace_member(saved, tmp_path / "t.zip", TENSORS, buffer.getvalue())
    with pytest.raises(ValueError, match=words):
        GFlowNetAlgorithm.load(tmp_path / "t.zip")


def test_a_missing_module_state_is_named(saved: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(saved) as archive:
        tensors = torch.load(io.BytesIO(archive.read(TENSORS)), weights_only=True)
    del tensors["modules"]["value"]
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    replace_member(saved, tmp_path / "t.zip", TENSORS, buffer.getvalue())
    with pytest.raises(ValueError, match="incomplete: it has no state for 'value'"):
        GFlowNetAlgorithm.load(tmp_path / "t.zip")
    replace_member(saved, tmp_path / "m.zip", TENSORS, None)
    with pytest.raises(ValueError, match="incomplete: it has no tensors.pt"):
        GFlowNetAlgorithm.load(tmp_path / "m.zip")


# ---------------------------------------------------------------------------- the env spec
def test_loading_into_another_reward_names_both_specs(saved: Path) -> None:
    """Same shape, another R0: refused with both specs named, unless strict_env=False (then a
    warning, and the networks load)."""
    other = {**GRID, "R0": 0.01}
    with pytest.raises(ValueError) as info:
        PolicyGradientGFN.load(saved, env=HyperGrid(**other))
    message = str(info.value)
    assert "'R0': 0.1" in message and "log R of the probe objects differs" in message
    assert "strict_env=False" in message and "an unregistered env" in message
    import gymnasium as gym

    with pytest.raises(ValueError, match=r"'R0': 0.1.*not on gfn_envs/HyperGrid-v0.*'R0': 0.01"):
        PolicyGradientGFN.load(saved, env=gym.make(ENV_ID, **other))
    with pytest.warns(UserWarning, match="loading anyway"):
        loaded = PolicyGradientGFN.load(saved, env=HyperGrid(**other), strict_env=False)
    reference = PolicyGradientGFN.load(saved)
    for a, b in zip(loaded.networks.parameters(), reference.networks.parameters(), strict=True):
        assert torch.equal(a, b)


def test_loading_into_another_shape_is_a_clear_error_not_a_size_dump(saved: Path) -> None:
    with pytest.raises(ValueError, match=r"obs_dim 12 != 16") as info:
        PolicyGradientGFN.load(saved, env=HyperGrid(ndim=2, height=8))
    assert "size mismatch" not in str(info.value)
    with (
        pytest.warns(UserWarning),
        pytest.raises(
            ValueError, match=r"the saved networks do not fit this agent \(.* is \["
        ) as info,
    ):
        PolicyGradientGFN.load(saved, env=HyperGrid(ndim=2, height=8), strict_env=False)
    assert "size mismatch" not in str(info.value) and "height': 6" in str(info.value)


def test_the_same_task_given_as_an_object_loads_without_warning(saved: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = PolicyGradientGFN.load(saved, env=HyperGrid(**GRID))
    assert loaded.env_id is None and loaded.num_trajectories == 16


def test_a_changed_registered_task_is_detected(saved: Path, tmp_path: Path) -> None:
    """If the task built from the saved id no longer gives the saved rewards, loading says so."""

    def shift(metadata: dict[str, Any]) -> None:
        rewards = metadata["env"]["fingerprint"]["probe_log_rewards"]
        metadata["env"]["fingerprint"]["probe_log_rewards"] = [r + 0.5 for r in rewards]

    edit_metadata(saved, tmp_path / "shifted.zip", shift)
    with pytest.raises(ValueError, match="another reward"):
        PolicyGradientGFN.load(tmp_path / "shifted.zip")


def test_the_device_is_the_loaders_choice(tmp_path: Path) -> None:
    """``device`` in env_kwargs is not stored: a checkpoint loads on the device asked for."""
    trained = make_agent("RL-U", ENV_ID, env_kwargs={**GRID, "device": "cpu"}, **SMALL)
    trained.save(tmp_path / "a.zip")
    assert "device" not in PolicyGradientGFN.load(tmp_path / "a.zip").env_kwargs


# ---------------------------------------------------------------------------- format 1
def _format1(path: Path, trained: GFlowNetAlgorithm, hyperparameters: Any = None) -> None:
    """A checkpoint as gfn-gym's format 1 wrote it (SB3's save_to_zip_file)."""
    from stable_baselines3.common.save_util import save_to_zip_file

    data = {
        "format_version": 1,
        "algorithm": type(trained).__name__,
        "policy": "MlpPolicy",
        "env_id": trained.env_id,
        "env_kwargs": trained.env_kwargs,
        "hyperparameters": hyperparameters
        or {
            **trained._hyperparameters(),
            "net_arch": list(trained.net_arch),
            "tensorboard_log": None,
        },
        "num_timesteps": trained.num_timesteps,
        "num_trajectories": trained.num_trajectories,
        "iteration": trained.iteration,
    }
    params = {name: module.state_dict() for name, module in trained._modules().items()}
    save_to_zip_file(path, data=data, params=params, pytorch_variables=trained._rng_state())


def test_a_format1_checkpoint_is_refused_with_what_to_do_and_converts(tmp_path: Path) -> None:
    trained = agent(seed=2).learn(total_trajectories=16)
    _format1(tmp_path / "old.zip", trained)
    with pytest.raises(ValueError, match=r"format-1 checkpoint.*unpickles.*gfn_agents.checkpoint"):
        GFlowNetAlgorithm.load(tmp_path / "old.zip")
    upgrade_checkpoint(tmp_path / "old.zip", tmp_path / "new.zip")
    with pytest.warns(UserWarning, match="no task fingerprint"):
        loaded = GFlowNetAlgorithm.load(tmp_path / "new.zip")
    for a, b in zip(loaded.networks.parameters(), trained.networks.parameters(), strict=True):
        assert torch.equal(a, b)
    assert loaded.num_trajectories == 16
    loaded.save(tmp_path / "again.zip")  # the next save adds the fingerprint
    with zipfile.ZipFile(tmp_path / "again.zip") as archive:
        assert json.loads(archive.read(METADATA))["env"]["fingerprint"] is not None


def test_converting_a_format1_file_with_a_pickled_entry_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    _format1(tmp_path / "old.zip", agent(), hyperparameters=RunsCommand(marker))
    with pytest.raises(
        ValueError, match=r"cannot be converted.*pickled \(refused\) \['hyperparameters'\]"
    ):
        upgrade_checkpoint(tmp_path / "old.zip", tmp_path / "new.zip")
    assert not marker.exists() and not (tmp_path / "new.zip").exists()


def test_the_converter_command_line(tmp_path: Path, capsys: Any) -> None:
    from gfn_agents.checkpoint import main

    _format1(tmp_path / "old.zip", agent())
    assert main([str(tmp_path / "old.zip"), str(tmp_path / "new")]) == 0
    assert "new.zip (format 2)" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.zip"), str(tmp_path / "x.zip")]) == 1
    assert main([]) == 2


# ---------------------------------------------------------------------------- replay buffers
def _dqn(**overrides: Any) -> SoftDQN:
    kwargs = {"net_arch": (16,), "batch_size": 4, "buffer_size": 300, "learning_starts": 0}
    return make_agent("SoftDQN", ENV_ID, env_kwargs=GRID, seed=0, **{**kwargs, **overrides})


def test_replay_buffer_is_an_npz_of_plain_arrays_that_restores_exactly(tmp_path: Path) -> None:
    trained = _dqn().learn(total_trajectories=40)
    trained.save_replay_buffer(tmp_path / "buffer")
    assert sorted(os.listdir(tmp_path)) == ["buffer.npz"]
    with np.load(tmp_path / "buffer.npz", allow_pickle=False) as archive:
        assert str(archive["kind"]) == "MaskableReplayBuffer"
        assert all(archive[name].dtype != object for name in archive.files)
    fresh = _dqn()
    fresh.load_replay_buffer(tmp_path / "buffer.npz")
    for name in ("observations", "actions", "rewards", "states", "masks", "next_masks"):
        assert np.array_equal(
            getattr(fresh.replay_buffer, name), getattr(trained.replay_buffer, name)
        )
    assert (fresh.replay_buffer.pos, fresh.replay_buffer.full) == (
        trained.replay_buffer.pos,
        trained.replay_buffer.full,
    )


def test_a_replay_buffer_with_a_payload_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    trained = _dqn().learn(total_trajectories=8)
    trained.save_replay_buffer(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    cases = {
        "object.npz": {**arrays, "rewards": np.array([RunsCommand(marker)], dtype=object)},
        "extra.npz": {**arrays, "payload": np.array([CreatesFile(marker)], dtype=object)},
    }
    for name, content in cases.items():
        np.savez(tmp_path / name, **content)  # numpy pickles the object arrays
    (tmp_path / "raw.npz").write_bytes(pickle.dumps(RunsCommand(marker)))
    words = {"object.npz": "refused", "extra.npz": "unexpected", "raw.npz": "refused"}
    for name, expected in words.items():
        with pytest.raises(ValueError, match=expected):
            _dqn().load_replay_buffer(tmp_path / name)
        assert not marker.exists(), name


def test_a_replay_buffer_of_another_size_or_a_damaged_one_is_refused(tmp_path: Path) -> None:
    _dqn(buffer_size=100).save_replay_buffer(tmp_path / "small.npz")
    with pytest.raises(ValueError, match="another buffer_size or task"):
        _dqn().load_replay_buffer(tmp_path / "small.npz")
    data = (tmp_path / "small.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged"):
        _dqn(buffer_size=100).load_replay_buffer(tmp_path / "cut.npz")
    with pytest.raises(FileNotFoundError, match="no file at"):
        _dqn().load_replay_buffer(tmp_path / "none.npz")


def test_deeply_nested_metadata_is_damaged_not_a_crash(saved: Path, tmp_path: Path) -> None:
    replace_member(saved, tmp_path / "deep.zip", METADATA, b"[" * 200_000 + b"]" * 200_000)
    with pytest.raises(ValueError, match="damaged"):
        GFlowNetAlgorithm.load(tmp_path / "deep.zip")
