"""How the stack reports: its error, what it prints, the tail of a service's log."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

Echo = Callable[[str], None]


class StackError(RuntimeError):
    """A service did not start, answer or stop; the message says which and what to do."""


def say(message: str) -> None:
    try:
        print(message, flush=True)
    except BrokenPipeError:  # the reader went away (`make status | head`): keep working
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def log_tail(path: str, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])
