"""Small file helpers: JSON reading, and atomic writes that concurrent writers cannot break.

Every write goes to a uniquely named temporary file in the target's folder and is renamed over the
target, so a reader sees the old or the new file, never half of one, even when several processes
(e.g. the tasks of a job array) write the same file at once.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when the file does not exist."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically (non-finite numbers are an error)."""
    write_bytes(path, (json.dumps(data, indent=1, allow_nan=False) + "\n").encode())


def write_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` in NumPy's ``.npy`` format atomically (load with ``allow_pickle=False``)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes(path, buffer.getvalue())
