"""Two SB3 callbacks for long runs: periodic checkpoints, and a clean stop on SIGINT / SIGTERM.

``gfn-train --save-freq N --save PATH`` uses both; they work with any agent's ``learn``::

    with GracefulStop() as stop:
        agent.learn(total_trajectories=..., callback=[stop, PeriodicCheckpoint(10, "run.zip")])
    if stop.signum is not None:
        agent.save("run.zip")  # the run stopped after a whole iteration; resume from here
"""

from __future__ import annotations

import signal
from types import FrameType, TracebackType
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback


class PeriodicCheckpoint(BaseCallback):
    """Save the agent to ``path`` (atomically, overwriting) every ``save_freq`` iterations.

    Iterations are counted by the agent (``model.iteration``), so a resumed run keeps saving at the
    same iterations as an uninterrupted one.
    """

    def __init__(self, save_freq: int, path: str, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1:
            raise ValueError(f"save_freq must be a positive integer, got {save_freq!r}")
        self.save_freq, self.path = save_freq, path

    def _on_step(self) -> bool:
        if self.model.iteration % self.save_freq == 0:
            self.model.save(self.path)
            if self.verbose:
                print(f"saved {self.path} at iteration {self.model.iteration}")
        return True


class GracefulStop(BaseCallback):
    """A context manager and callback: inside ``with``, the first SIGINT or SIGTERM is recorded in
    ``signum`` and training stops after the current iteration (``on_step`` returns False); a second
    signal raises ``KeyboardInterrupt`` at once. The previous handlers are restored on exit. Only the
    main thread can install signal handlers."""

    def __init__(self, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        super().__init__()
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def _on_step(self) -> bool:
        return self.signum is None
