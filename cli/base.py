"""What every `goodbooks` command shares: the Typer apps, expected failures, settings.

Tool state (Prefect home, MLflow store, matplotlib cache) is pointed inside the project
before Prefect or MLflow is imported, so every command imports them lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

try:
    import typer
except ImportError:  # a serving-only install: the command line is part of the pipeline
    raise SystemExit("the goodbooks command needs the pipeline: pip install "
                     "'goodbooks-recommender[pipeline]' (the API alone runs as goodbooks-api)"
                     ) from None

from settings import Settings, SettingsError, apply_tool_environment, get_settings

app = typer.Typer(
    help="GoodBooks Recommender: validate, train, publish and serve book recommendations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Get goodbooks data: generate it or download the real files.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
events_app = typer.Typer(help="The app's events: the Redis stream and the interaction log.",
                         no_args_is_help=True)
app.add_typer(events_app, name="events")


# Set by --debug: show the tracebacks of expected failures too.
_OPTIONS = {"debug": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show tracebacks of expected failures (a rejected dataset, a "
        "failed gate, ...), which are otherwise reported by their message alone.")] = False,
) -> None:
    """GoodBooks Recommender: validate, train, publish and serve book recommendations."""
    _OPTIONS["debug"] = debug


class _WithoutTraceback(logging.Filter):
    """Drop the traceback of a log record about an expected failure: its message says all."""

    def filter(self, record: logging.LogRecord) -> bool:
        from models.schema import GoodbooksError

        if record.exc_info and isinstance(record.exc_info[1], GoodbooksError):
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def reported() -> Iterator[None]:
    """Run a flow; an expected failure prints its message (no traceback) and exits 1.

    A rejected dataset, a gate that refuses, a bad request: the message (a validation report
    naming rows and rules) is what to read. Prefect's run loggers would print the same error
    three times with tracebacks; those are left out here unless --debug.
    """
    from models.schema import GoodbooksError

    quiet = _WithoutTraceback()
    loggers = [logging.getLogger(name) for name in ("prefect.task_runs", "prefect.flow_runs")]
    if not _OPTIONS["debug"]:
        for logger in loggers:
            logger.addFilter(quiet)
    try:
        yield
    except GoodbooksError as exc:
        if _OPTIONS["debug"]:
            raise
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def prepare() -> Settings:
    """Validate settings and export tool variables; exit with a readable message if wrong."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    apply_tool_environment(settings)
    return settings

