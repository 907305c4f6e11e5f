"""Checkpoint and replay-buffer files that loading can never turn into code execution.

**Checkpoint** (format 2): a zip archive with exactly two members.

* ``metadata.json``: plain JSON. The format name and version, the algorithm class, the policy, the
  env spec (registered id, kwargs and a fingerprint of the task), the hyperparameters and the
  counters. Only JSON types are stored; a tuple is written as ``{"__tuple__": [...]}`` and a numpy
  array as ``{"__ndarray__": [...], "dtype": "float64"}`` and both are restored as such
  (:func:`to_json`, :func:`from_json`), so ``net_arch=(64, 64)`` comes back as a tuple.
* ``tensors.pt``: ``torch.save`` of ``{"modules": {name: state_dict}, "rng": {name: ByteTensor}}``
  (networks, optimizers, a guide's buffer, the RNG states), read with
  ``torch.load(weights_only=True)``.

Why ``torch.load(weights_only=True)`` and not safetensors: optimizer state dicts are nested
(parameter groups with floats, tuples, booleans and None next to per-parameter tensors) and a
guide's state holds Python scalars; safetensors stores only a flat map of tensors, so every such
structure would need a second, hand-written schema. The weights-only loader rebuilds tensors and
plain containers and refuses any other global, so a crafted file cannot name a callable; it needs
no extra dependency. On top of it ``tensors.pt`` must be torch's zip format (the legacy raw-pickle
format is refused before it is read).

Reading order (:func:`read_checkpoint`): the archive opens (else "damaged"); its members are
exactly the two above (a format-1 file, an unknown or a duplicated member is refused); the JSON
parses and its format version is checked; the required keys are present; only then are the tensors
read. Every refusal is a ``ValueError`` naming the file and the reason, and nothing in the file is
executed. Files are written to a temporary file in the target directory and renamed
(:func:`atomic_write`), so an interrupted save leaves the previous file intact.

**Replay buffer** (:func:`save_arrays` / :func:`load_arrays`): an ``.npz`` of plain arrays plus a
``format_version`` and a ``kind`` entry, read with ``numpy.load(allow_pickle=False)``; object arrays
and unknown entries are refused.

Format-1 files (written through SB3's ``save_util``, whose loader unpickles) are refused;
:func:`upgrade_checkpoint` (``python -m gfn_agents.checkpoint OLD NEW``) converts one without
unpickling. The env spec a checkpoint stores is described in :mod:`gfn_agents.envspec`.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

FORMAT_NAME = "gfn-gym checkpoint"
FORMAT_VERSION = 2
METADATA, TENSORS = "metadata.json", "tensors.pt"
COUNTERS = ("num_timesteps", "num_trajectories", "iteration")
REQUIRED_KEYS = ("algorithm", "policy", "env", "hyperparameters", *COUNTERS)
FORMAT1_MEMBERS = ("data", "pytorch_variables.pth")
MAX_METADATA_BYTES = 64 * 2**20
BUFFER_FORMAT_VERSION = 1
NUMERIC_KINDS = "biuf"


class Checkpoint(NamedTuple):
    """What :func:`read_checkpoint` returns: the JSON metadata (tuples restored), the state dicts
    by module name and the RNG states."""

    path: str
    metadata: dict[str, Any]
    modules: dict[str, dict[str, Any]]
    rng: dict[str, Tensor]


# ---------------------------------------------------------------------------- paths and writing
def with_suffix(path: str | os.PathLike[str], suffix: str) -> str:
    """``path`` with ``suffix`` appended unless it already ends with it (SB3's convention)."""
    path = os.fspath(path)
    return path if path.endswith(suffix) else path + suffix


def existing_file(path: str | os.PathLike[str], suffix: str) -> str:
    """``path``, or ``path + suffix`` when only that exists; else a FileNotFoundError that names the
    path the caller gave."""
    given = os.fspath(path)
    for candidate in (given, with_suffix(given, suffix)):
        if os.path.isfile(candidate):
            return candidate
    tried = "" if given.endswith(suffix) else f" (nor {with_suffix(given, suffix)!r})"
    raise FileNotFoundError(f"no file at {given!r}{tried}")


def atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Create ``path``'s directory, call ``write`` on a temporary file beside ``path`` and rename it
    to ``path``; on any error the temporary file is removed and ``path`` is left as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ---------------------------------------------------------------------------- JSON schema
def to_json(value: Any, where: str) -> Any:
    """``value`` as JSON types; tuples and numeric numpy arrays are tagged (see the module
    docstring). Anything else is a ValueError naming ``where``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in NUMERIC_KINDS:
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not np.isfinite(value):
            raise ValueError(f"{where} is {value!r}; a checkpoint stores only finite floats")
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [to_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray) and value.dtype.kind in NUMERIC_KINDS:
        return {"__ndarray__": to_json(value.tolist(), where), "dtype": value.dtype.str}
    if isinstance(value, dict):
        if any(not isinstance(k, str) for k in value) or {"__tuple__", "__ndarray__"} & set(value):
            raise ValueError(f"{where} must have string keys other than __tuple__ / __ndarray__")
        return {k: to_json(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise ValueError(
        f"{where} is a {type(value).__name__}; a checkpoint stores only JSON values, tuples and "
        "numeric arrays"
    )


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json` (tagged tuples and arrays restored)."""
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.keys() == {"__tuple__"} and isinstance(value["__tuple__"], list):
        return tuple(from_json(v) for v in value["__tuple__"])
    if value.keys() == {"__ndarray__", "dtype"}:
        dtype = np.dtype(str(value["dtype"]))
        if dtype.kind not in NUMERIC_KINDS:
            raise ValueError(f"array dtype {dtype} is not numeric")
        return np.asarray(value["__ndarray__"], dtype=dtype)
    return {k: from_json(v) for k, v in value.items()}


# ---------------------------------------------------------------------------- checkpoints
def write_checkpoint(
    path: str | os.PathLike[str],
    metadata: dict[str, Any],
    modules: dict[str, dict[str, Any]],
    rng: dict[str, Tensor],
) -> str:
    """Write a format-2 checkpoint atomically; returns the path written (``.zip`` appended)."""
    path = with_suffix(path, ".zip")
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    text = json.dumps(to_json({**header, **metadata}, "metadata"), indent=1, allow_nan=False)
    tensors = io.BytesIO()
    torch.save({"modules": modules, "rng": rng}, tensors)

    def write(handle: IO[bytes]) -> None:
        with zipfile.ZipFile(handle, "w") as archive:
            archive.writestr(METADATA, text, compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr(TENSORS, tensors.getvalue(), compress_type=zipfile.ZIP_STORED)

    atomic_write(path, write)
    return path


def read_checkpoint(path: str | os.PathLike[str], device: str | torch.device) -> Checkpoint:
    """Read and check a checkpoint in the order of the module docstring (tensors on ``device``)."""
    path = existing_file(path, ".zip")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            _check_members(path, names)
            info = archive.getinfo(METADATA)
            if info.file_size > MAX_METADATA_BYTES:
                raise ValueError(f"{path}: {METADATA} is {info.file_size} bytes; refused")
            text = archive.read(METADATA)
            try:
                metadata = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
                raise ValueError(f"{path} is damaged: {METADATA} is not JSON ({exc})") from None
            _check_metadata(path, metadata)
            raw = archive.read(TENSORS)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path} is damaged or not a gfn-gym checkpoint ({exc})") from None
    tensors = load_tensors(raw, f"{path}: {TENSORS}", device)
    if not isinstance(tensors, dict) or tensors.keys() != {"modules", "rng"}:
        raise ValueError(f"{path} is incomplete: {TENSORS} must hold 'modules' and 'rng'")
    modules, rng = tensors["modules"], tensors["rng"]
    if not isinstance(modules, dict) or not all(isinstance(v, dict) for v in modules.values()):
        raise ValueError(f"{path} is damaged: {TENSORS} 'modules' is not a dict of state dicts")
    for key in ("generator", "torch"):
        if not isinstance(rng, dict) or not isinstance(rng.get(key), Tensor):
            raise ValueError(f"{path} is incomplete: it has no {key!r} RNG state")
    try:
        metadata = from_json(metadata)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"{path} is damaged: {exc}") from None
    return Checkpoint(path, metadata, modules, rng)


def _check_members(path: str, names: list[str]) -> None:
    if METADATA not in names and all(name in names for name in FORMAT1_MEMBERS):
        raise ValueError(
            f"{path} is a format-1 checkpoint. It is not loaded: format 1 was written through "
            "Stable-Baselines3's save_util, whose loader unpickles entries and so can run code "
            "hidden in a file. Convert it once with `python -m gfn_agents.checkpoint "
            f"{path} NEW.zip` (reads only its JSON and weights-only tensors, never unpickles), "
            "then load NEW.zip."
        )
    expected = (METADATA, TENSORS)
    missing = [name for name in expected if name not in names]
    unknown = sorted(set(names) - set(expected))
    if len(missing) == len(expected):
        raise ValueError(
            f"{path} is damaged or not a gfn-gym checkpoint: it holds {unknown[:4]} instead of "
            f"{METADATA} and {TENSORS}"
        )
    if unknown or len(names) != len(set(names)):
        raise ValueError(
            f"{path} is not a gfn-gym checkpoint: unexpected member(s) {unknown or names} "
            f"(a checkpoint holds exactly {METADATA} and {TENSORS}); refused"
        )
    if missing:
        raise ValueError(f"{path} is incomplete: it has no {missing[0]}")


def _check_metadata(path: str, metadata: Any) -> None:
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not a gfn-gym checkpoint ({METADATA} has no format name)")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format {version!r}; this gfn-gym reads format "
            f"{FORMAT_VERSION}"
            + (" (the file is newer: upgrade gfn-gym)" if _newer(version) else "")
        )
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"{path} is incomplete: {METADATA} has no {', '.join(map(repr, missing))}")
    env = metadata["env"]
    if not isinstance(env, dict) or not {"id", "kwargs", "fingerprint"} <= env.keys():
        raise ValueError(f"{path} is incomplete: its env spec needs id, kwargs and fingerprint")
    if not isinstance(metadata["hyperparameters"], dict) or not isinstance(env["kwargs"], dict):
        raise ValueError(f"{path} is damaged: hyperparameters and env kwargs must be objects")
    if env["fingerprint"] is not None and not isinstance(env["fingerprint"], dict):
        raise ValueError(f"{path} is damaged: the env fingerprint must be an object or null")
    for key in COUNTERS:
        value = metadata[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{path} is damaged: {key} must be an integer >= 0, got {value!r}")


def _newer(version: Any) -> bool:
    return isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION


def load_tensors(raw: bytes, what: str, device: str | torch.device) -> Any:
    """``torch.load(weights_only=True)`` of torch-zip bytes; a refusal is a ValueError."""
    if not zipfile.is_zipfile(io.BytesIO(raw)):
        raise ValueError(f"{what} is not in torch's zip format (legacy pickles are refused)")
    try:
        return torch.load(io.BytesIO(raw), map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises many types; all mean "refused")
        message = str(exc)
        if "Weights only load failed" in message:
            reason = re.search(r"(Unsupported[^\n]*|Trying to load unsupported[^\n]*)", message)
            detail = reason.group(1) if reason else "an object other than tensors and plain values"
            raise ValueError(
                f"{what} holds something that only unpickling could rebuild ({detail}); "
                "refused, nothing in it was run"
            ) from None
        raise ValueError(f"{what} is damaged ({type(exc).__name__}: {message[:200]})") from None


def shape_mismatch(current: dict[str, Any], saved: dict[str, Any]) -> str | None:
    """How a saved network state dict differs in keys or tensor shapes, or None."""
    if current.keys() != saved.keys():
        missing, extra = (
            sorted(current.keys() - saved.keys()),
            sorted(saved.keys() - current.keys()),
        )
        return f"missing {missing[:3]}, unexpected {extra[:3]}"
    for key, value in current.items():
        other = saved[key]
        if not isinstance(other, Tensor) or other.shape != value.shape:
            found = list(other.shape) if isinstance(other, Tensor) else type(other).__name__
            return f"{key} is {found} in the file, {list(value.shape)} here"
    return None


def restore_modules(ckpt: Checkpoint, modules: dict[str, Any], context: str) -> None:
    """Load ``ckpt``'s state dicts into ``modules`` (networks, optimizers, a guide): every module
    needs its state and every state its module; a network whose tensor shapes differ is a
    ValueError naming the tensor and ``context`` (the two env specs), never a raw size dump."""
    extra = sorted(ckpt.modules.keys() - modules.keys())
    if extra:
        raise ValueError(f"{ckpt.path} holds state for {extra}, which this agent lacks")
    for name, module in modules.items():
        if name not in ckpt.modules:
            raise ValueError(f"{ckpt.path} is incomplete: it has no state for {name!r}")
        state = ckpt.modules[name]
        is_network = isinstance(module, torch.nn.Module)
        mismatch = shape_mismatch(module.state_dict(), state) if is_network else None
        if mismatch is not None:
            raise ValueError(
                f"{ckpt.path}: the saved {name} do not fit this agent ({mismatch}); {context}"
            )
        try:
            module.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(
                f"{ckpt.path}: the saved {name} state does not load ({first})"
            ) from exc


# ---------------------------------------------------------------------------- arrays (replay buffers)
def save_arrays(path: str | os.PathLike[str], kind: str, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` as an ``.npz`` tagged with ``kind`` and a format version, atomically;
    returns the path written (``.npz`` appended)."""
    path = with_suffix(path, ".npz")
    reserved = {"format_version", "kind"} & arrays.keys()
    if reserved:
        raise ValueError(f"array names {sorted(reserved)} are reserved")
    payload = {
        "format_version": np.asarray(BUFFER_FORMAT_VERSION),
        "kind": np.asarray(kind),
        **{name: np.asarray(value) for name, value in arrays.items()},
    }
    atomic_write(path, lambda handle: np.savez(handle, **payload))
    return path


def load_arrays(path: str | os.PathLike[str], kind: str, names: set[str]) -> dict[str, np.ndarray]:
    """Read :func:`save_arrays`' file with ``allow_pickle=False``; it must be a ``kind`` file with
    exactly the arrays ``names``."""
    path = existing_file(path, ".npz")
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as exc:  # a pickle, which allow_pickle=False refuses
        raise ValueError(f"{path} is refused: {exc}") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path} is damaged ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is not an .npz archive of a {kind}")
    with archive:
        if set(archive.files) != names | {"format_version", "kind"}:
            raise ValueError(
                f"{path} is not a {kind} file: missing {sorted(names - set(archive.files))}, "
                f"unexpected {sorted(set(archive.files) - names - {'format_version', 'kind'})}"
            )
        try:
            arrays = {name: archive[name] for name in archive.files}
        except ValueError as exc:  # object arrays, which allow_pickle=False refuses
            raise ValueError(f"{path} is refused: {exc}") from None
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"{path} is damaged ({exc})") from None
    version, stored_kind = arrays.pop("format_version"), arrays.pop("kind")
    if (
        version.shape != ()
        or version.dtype.kind not in "iu"
        or int(version) != BUFFER_FORMAT_VERSION
    ):
        raise ValueError(f"{path} has format {version.tolist()!r}, not {BUFFER_FORMAT_VERSION}")
    if stored_kind.shape != () or str(stored_kind) != kind:
        raise ValueError(f"{path} holds a {stored_kind.tolist()!r}, not a {kind}")
    return arrays


# ---------------------------------------------------------------------------- format 1
def upgrade_checkpoint(old: str | os.PathLike[str], new: str | os.PathLike[str]) -> str:
    """Convert a format-1 checkpoint to format 2 without unpickling anything.

    Format 1 (SB3's ``save_to_zip_file``) holds a JSON ``data`` member, one ``torch.save`` file per
    module and ``pytorch_variables.pth`` (the RNG states). Only plain JSON entries are taken (an
    entry SB3 had to pickle, marked ``:serialized:``, is refused) and the ``.pth`` members are read
    with ``torch.load(weights_only=True)``. Format 1 had no task fingerprint, so the converted file
    has none: its first load warns that the env is not checked, and the next save adds one.
    Returns the path written.
    """
    old = existing_file(old, ".zip")
    try:
        with zipfile.ZipFile(old) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{old} is damaged ({exc})") from None
    if not all(name in members for name in FORMAT1_MEMBERS):
        raise ValueError(f"{old} is not a format-1 checkpoint (no data / pytorch_variables.pth)")
    try:
        data = json.loads(members.pop("data"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{old} is damaged: its data member is not JSON ({exc})") from None
    keys = ("algorithm", "policy", "env_id", "env_kwargs", "hyperparameters", *COUNTERS)
    if not isinstance(data, dict) or data.get("format_version") != 1:
        raise ValueError(
            f"{old} is not a format-1 checkpoint (format {data.get('format_version')!r})"
        )
    missing = [key for key in keys if key not in data]
    serialized = [key for key in keys if ":serialized:" in json.dumps(data.get(key))]
    if missing or serialized:
        raise ValueError(
            f"{old} cannot be converted: missing {missing}, pickled (refused) {serialized}"
        )
    rng = load_tensors(members.pop("pytorch_variables.pth"), f"{old}: pytorch_variables.pth", "cpu")
    modules = {
        name[: -len(".pth")]: load_tensors(raw, f"{old}: {name}", "cpu")
        for name, raw in members.items()
        if name.endswith(".pth")
    }
    hyperparameters = dict(data["hyperparameters"])
    hyperparameters.pop("tensorboard_log", None)
    env_kwargs = {k: v for k, v in data["env_kwargs"].items() if k != "device"}
    metadata = {
        "algorithm": data["algorithm"],
        "policy": data["policy"],
        "env": {"id": data["env_id"], "kwargs": env_kwargs, "fingerprint": None},
        "hyperparameters": hyperparameters,
        **{key: data[key] for key in COUNTERS},
    }
    return write_checkpoint(new, metadata, modules, rng)


def main(argv: list[str] | None = None) -> int:
    """``python -m gfn_agents.checkpoint OLD NEW``: :func:`upgrade_checkpoint`."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0].startswith("-"):
        print("usage: python -m gfn_agents.checkpoint OLD.zip NEW.zip", file=sys.stderr)
        return 2
    try:
        written = upgrade_checkpoint(args[0], args[1])
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {written} (format {FORMAT_VERSION})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
