"""Pinned aliases, and the registry's aliases as Redis last heard of them.

An alias is **pinned** while something depends on it staying where it is: a running A/B
experiment (each arm's alias, pinned at the start to the MLflow version and Redis batch the
experiment tests) or a rollback (pinned where it was rolled back to, so the nightly gate
does not silently undo it). While an alias is pinned the registry gate does not move its
MLflow alias (a new version waits as ``<alias>-next``) and the score flow does not publish
it. The pin is lifted when the experiment ends, or by ``goodbooks unpin ALIAS``.

    ``{p}pin:{alias}``     string  JSON: owner ("experiment:<name>" or "rollback"), reason,
                                   since (ISO 8601), model_version, redis_version
    ``{p}registry``        hash    alias -> MLflow model version, written by every step
                                   that moves an MLflow alias (gate, promotion, rollback)

The second key lets a process without MLflow (the API's ``/ready``) see whether a Redis
alias serves the model version the registry's alias names: ``disagreements`` compares the
two, and ``goodbooks status`` does the same against MLflow itself.

Standard library and redis only: the serving layer reads these keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from serving.keys import as_text
from serving.store import RecStore

__all__ = [
    "Pin",
    "PinnedError",
    "disagreements",
    "get_pin",
    "pin_alias",
    "pins",
    "record_registry_alias",
    "registry_aliases_seen",
    "unpin_alias",
]


class PinnedError(RuntimeError):
    """An alias is pinned by someone else; the message names the owner and how to unpin."""


@dataclass(frozen=True)
class Pin:
    """Who holds an alias where it is, and at which versions."""

    alias: str
    owner: str  # "experiment:<name>" or "rollback"
    reason: str
    since: str
    model_version: str | None
    redis_version: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Pin:
        return cls(**json.loads(text))

    def describe(self) -> str:
        return (f"{self.alias} is pinned by {self.owner} since {self.since} (model version "
                f"{self.model_version}, Redis version {self.redis_version}): {self.reason}")


def pin_key(store: RecStore, alias: str) -> str:
    return store.pin_key(alias)


def registry_key(store: RecStore) -> str:
    return store.registry_key


def pin_alias(store: RecStore, alias: str, owner: str, reason: str,
              model_version: str | None, redis_version: str | None,
              replace: bool = False) -> Pin:
    """Pin ``alias``; PinnedError when another owner holds it (unless ``replace``)."""
    pin = Pin(alias, owner, reason, datetime.now(UTC).isoformat(timespec="seconds"),
              model_version, redis_version)
    key = pin_key(store, alias)
    if store.client.set(key, pin.to_json(), nx=True):
        return pin
    held = get_pin(store, alias)
    if held is not None and held.owner != owner and not replace:
        raise PinnedError(f"{held.describe()}; `goodbooks unpin {alias}` first")
    store.client.set(key, pin.to_json())
    return pin


def get_pin(store: RecStore, alias: str) -> Pin | None:
    raw = store.client.get(pin_key(store, alias))
    return None if raw is None else Pin.from_json(raw)


def pins(store: RecStore) -> dict[str, Pin]:
    """Every pinned alias."""
    found = {}
    for key in store.client.scan_iter(match=f"{store.glob_control_prefix}pin:*", count=1000):
        raw = store.client.get(key)
        if raw is not None:
            pin = Pin.from_json(raw)
            found[pin.alias] = pin
    return found


def unpin_alias(store: RecStore, alias: str, owner: str | None = None) -> Pin | None:
    """Lift the pin (only ``owner``'s when given); the pin lifted, or None."""
    held = get_pin(store, alias)
    if held is None or (owner is not None and held.owner != owner):
        return None
    store.client.delete(pin_key(store, alias))
    return held


def record_registry_alias(store: RecStore, alias: str, model_version: str | None) -> None:
    """Note where the registry's ``alias`` points now (None: the alias was removed)."""
    if model_version is None:
        store.client.hdel(registry_key(store), alias)
    else:
        store.client.hset(registry_key(store), alias, model_version)


def registry_aliases_seen(store: RecStore) -> dict[str, str]:
    raw = store.client.hgetall(registry_key(store))
    return {as_text(k): as_text(v) for k, v in raw.items()}


def disagreements(registry: Mapping[str, str], store: RecStore,
                  aliases: tuple[str, ...] = ("champion", "challenger"),
                  complete: bool = False) -> list[str]:
    """Aliases whose Redis batch serves another model version than the registry names.

    ``registry`` is MLflow's aliases (``complete``: an alias missing there is missing in
    MLflow) or what Redis last heard of them (an alias missing there is unknown, skipped).
    """
    found = []
    for alias in aliases:
        model_version = registry.get(alias)
        redis_version = store.get_alias(alias)
        if (model_version is None and redis_version is None) or (
                model_version is None and not complete):
            continue
        manifest = store.get_manifest(redis_version) if redis_version else None
        served = manifest.get("model_version") if manifest else None
        if model_version is None:
            found.append(f"Redis serves {alias} (model version {served}) but the registry "
                         f"has no {alias}")
        elif redis_version is None:
            found.append(f"the registry's {alias} is model version {model_version} but "
                         f"Redis serves nothing as {alias}")
        elif served is not None and served != model_version:
            found.append(f"the registry's {alias} is model version {model_version} but "
                         f"Redis serves version {redis_version} of model version {served}")
    return found

