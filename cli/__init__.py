"""The `goodbooks` command line: one subcommand per flow, data tools, serving and the demo.

- `cli.base`: the Typer apps, how expected failures are reported, settings;
- `cli.pipeline`: the demo and the commands that run flows, move aliases, judge
  experiments and serve;
- `cli.data`: `goodbooks data generate | continue | download`;
- `cli.events`: `goodbooks events drain`.

Run it as `goodbooks ...` or `python -m cli ...`.
"""

from __future__ import annotations

from cli import data, events, pipeline  # noqa: F401  (each registers its commands)
from cli.base import app, get_settings, prepare, reported

__all__ = ["app", "get_settings", "prepare", "reported"]
