"""`goodbooks events`: the app's events, from the Redis stream to the interaction log."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.base import events_app, prepare


@events_app.command("drain")
def events_drain(
    max_events: Annotated[int | None, typer.Option(
        min=1, help="Stop after about this many (default: up to the newest event).")] = None,
) -> None:
    """Move the event stream into the interaction log (durable first, then acknowledged).

    The nightly flow does this as its first step; run it more often (cron, a loop) to keep
    the stream short. Exits with 1 when a damaged log file held events the stream no
    longer has.
    """
    settings = prepare()
    from models.event_log import InteractionLog
    from serving.connection import connect_redis
    from serving.store import RecStore
    from tasks.events import drain_stream

    store = RecStore(connect_redis(settings.redis_url, settings.redis_db_path,
                                   socket_timeout_s=settings.redis_socket_timeout_s),
                     settings.redis_prefix)
    result = drain_stream(store.client, store.events_key,
                          InteractionLog(settings.event_log_path), max_entries=max_events,
                          keep_s=settings.events_keep_s)
    for damaged in result.damaged:
        typer.secho(f"damaged log file {damaged['file']} ({damaged['error']}): set aside as "
                    f"{damaged['moved_to']}; entries {damaged['entries']} drained again where "
                    "the stream still holds them", fg="yellow", err=True)
    typer.echo(result.summary())
    typer.echo(f"interaction log: {settings.event_log_path}")
    if result.lost:
        raise typer.Exit(1)
