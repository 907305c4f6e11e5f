"""docs/new_task.md is executable: its Python blocks run in order and print exactly its output
blocks, so the guide to adding a task and the tested worked example cannot drift apart."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import gymnasium as gym

DOC = Path(__file__).resolve().parents[1] / "docs" / "new_task.md"


def blocks(text: str) -> tuple[str, str]:
    """The concatenated ```python blocks and the concatenated plain ``` (output) blocks."""
    fenced = re.findall(r"^```(\w*)\n(.*?)^```[ \t]*$", text, flags=re.M | re.S)
    code = [body for language, body in fenced if language == "python"]
    output = [body for language, body in fenced if language == ""]
    return "\n".join(code), "".join(output)


def test_new_task_guide_runs_and_prints_what_it_shows() -> None:
    code, expected = blocks(DOC.read_text())
    assert "class Subsets(Task)" in code and "gym.register" in code and "check_gfn_env" in code
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, str(DOC), "exec"), {"__name__": "new_task_doc"})
    finally:
        gym.registry.pop("my_tasks/Subsets-v0", None)
    assert printed.getvalue() == expected
