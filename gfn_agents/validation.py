"""Checks of constructor arguments shared by the agents: each raises a ``ValueError`` that names the
parameter, what it must be and what it got."""

from __future__ import annotations

import math
from typing import Any

import torch


def check_positive(name: str, value: Any, integer: bool = False) -> None:
    """Raise a clear ValueError unless ``value`` is a positive (integer) number."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        what = "a positive integer" if integer else "a positive number"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if not integer and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


def check_unit_interval(name: str, value: Any) -> None:
    """Raise a clear ValueError unless ``value`` lies in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")


def check_device(device: Any) -> torch.device:
    """``device`` as a torch.device, or a clear ValueError when it is malformed or unavailable."""
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be like 'cpu', 'cuda' or 'cuda:0', got {device!r}") from exc
    if out.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if out.type == "cuda" and (out.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device={str(device)!r} but CUDA is not available or has no such GPU (torch "
            f"{torch.__version__}, {torch.cuda.device_count()} GPU(s)); use device='cpu'"
        )
    return out
