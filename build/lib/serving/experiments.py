"""A/B experiments: the stored config, and the deterministic reader -> variant assignment.

Standard library only: the serving layer assigns readers with it, and the A/B evaluation
recomputes the same assignment from it, so both always agree.

A reader's bucket is ``int(sha256(f"{salt}:{user_id}")[:8 bytes], big-endian) % 10_000``
(``user_id`` in decimal). It does not depend on the process, the machine or the language
(unlike Python's ``hash()``), and a new salt reshuffles every reader. Variants own
consecutive bucket ranges in their listed order, sized by their ``share``; the first variant
is the control, served to everyone when the experiment is absent or stopped.

Stored as a JSON string under ``{prefix}experiment:{name}``, for example::

    {"name": "lightfm-vs-champion", "salt": "2026-11-a",
     "variants": [{"name": "control", "alias": "champion", "share": 0.5},
                  {"name": "treatment", "alias": "challenger", "share": 0.5}],
     "status": "active", "started_at": "2026-11-28T21:30:00+00:00",
     "stopped_at": null, "description": "weekly retrain against last month's model"}
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "BUCKETS",
    "CONTROL",
    "Experiment",
    "InvalidExperimentError",
    "Variant",
    "assign_variant",
    "bucket_of",
    "control_only",
]

BUCKETS = 10_000
CONTROL = "control"
Status = Literal["active", "stopped"]

# Names end up in Redis keys, stream fields and counter fields ("a|b|c"): no ':', '|' or
# spaces. The same rule as the store's versions and aliases.
NAME_PATTERN = r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}"
_NAME_RE = re.compile(NAME_PATTERN)
_MAX_SALT = 128
# Shares are written by people ("0.1", "1/3" as 0.3333): they must add up to 1 within this.
_SHARE_TOLERANCE = 1e-6


class InvalidExperimentError(ValueError):
    """An experiment config that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: its name, the alias it serves, and its share of readers."""

    name: str
    alias: str
    share: float

    def __post_init__(self) -> None:
        _check_name(self.name, "variant name")
        _check_name(self.alias, f"alias of variant {self.name!r}")
        share = self.share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise InvalidExperimentError(
                f"share of variant {self.name!r} must be a number from 0 to 1, got {share!r}"
            )


@dataclass(frozen=True)
class Experiment:
    """An A/B experiment: variants (the first is the control), their split, salt and status."""

    name: str
    variants: tuple[Variant, ...]
    salt: str
    status: Status = "active"
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    stopped_at: str | None = None
    description: str = ""
    # Upper bucket bound of each variant, derived from the shares.
    _bounds: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name, "experiment name")
        if not isinstance(self.variants, tuple) or not self.variants:
            raise InvalidExperimentError(
                f"experiment {self.name!r} needs a non-empty tuple of variants"
            )
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise InvalidExperimentError(f"experiment {self.name!r} repeats a variant: {names}")
        total = sum(variant.share for variant in self.variants)
        if abs(total - 1.0) > _SHARE_TOLERANCE:
            raise InvalidExperimentError(
                f"shares of experiment {self.name!r} add up to {total}, not 1"
            )
        if not isinstance(self.salt, str) or not 0 < len(self.salt) <= _MAX_SALT:
            raise InvalidExperimentError(
                f"salt of experiment {self.name!r} must be 1-{_MAX_SALT} characters"
            )
        if self.status not in ("active", "stopped"):
            raise InvalidExperimentError(
                f"status of experiment {self.name!r} must be 'active' or 'stopped', "
                f"got {self.status!r}"
            )
        _check_timestamp(self.started_at, "started_at")
        if self.stopped_at is not None:
            _check_timestamp(self.stopped_at, "stopped_at")
        bounds, cumulative = [], 0.0
        for variant in self.variants:
            cumulative += variant.share
            bounds.append(round(cumulative * BUCKETS))
        bounds[-1] = BUCKETS  # rounding must never leave the last buckets unassigned
        object.__setattr__(self, "_bounds", tuple(bounds))

    @property
    def control(self) -> Variant:
        """The variant served when the experiment is not running (the first one)."""
        return self.variants[0]

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @property
    def aliases(self) -> tuple[str, ...]:
        """The aliases the variants serve, control first, without repeats."""
        return tuple(dict.fromkeys(variant.alias for variant in self.variants))

    def bucket_range(self, variant_name: str) -> range:
        """The buckets (of ``BUCKETS``) that ``variant_name`` owns."""
        for index, variant in enumerate(self.variants):
            if variant.name == variant_name:
                start = self._bounds[index - 1] if index else 0
                return range(start, self._bounds[index])
        raise KeyError(f"experiment {self.name!r} has no variant {variant_name!r}")

    def variant_for_bucket(self, bucket: int) -> Variant:
        """The variant owning ``bucket``."""
        if not 0 <= bucket < BUCKETS:
            raise ValueError(f"bucket must be in [0, {BUCKETS}), got {bucket}")
        return self.variants[bisect.bisect_right(self._bounds, bucket)]

    def stopped(self, at: datetime | None = None) -> Experiment:
        """A copy marked stopped (at ``at``, default now); readers then all get the control."""
        when = (at or datetime.now(UTC)).isoformat()
        return Experiment(
            self.name, self.variants, self.salt, "stopped", self.started_at, when, self.description
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready mapping stored in Redis."""
        return {
            "name": self.name,
            "salt": self.salt,
            "variants": [
                {"name": v.name, "alias": v.alias, "share": v.share} for v in self.variants
            ],
            "status": self.status,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "description": self.description,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Any) -> Experiment:
        """Rebuild an experiment from its stored mapping; InvalidExperimentError if malformed."""
        if not isinstance(raw, dict):
            raise InvalidExperimentError(f"an experiment must be a JSON object, got {raw!r:.80}")
        try:
            variants = tuple(
                Variant(name=v["name"], alias=v["alias"], share=v["share"]) for v in raw["variants"]
            )
            return cls(
                name=raw["name"],
                variants=variants,
                salt=raw["salt"],
                status=raw.get("status", "active"),
                started_at=raw["started_at"],
                stopped_at=raw.get("stopped_at"),
                description=str(raw.get("description", "")),
            )
        except KeyError as exc:
            raise InvalidExperimentError(f"experiment config lacks the field {exc}") from None
        except TypeError as exc:
            raise InvalidExperimentError(f"experiment config is malformed: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Experiment:
        try:
            raw = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidExperimentError(f"experiment config is not valid JSON: {exc}") from None
        return cls.from_dict(raw)


def control_only(alias: str = "champion", name: str = "none") -> Experiment:
    """A stopped one-variant experiment: everyone gets ``alias`` as variant "control"."""
    return Experiment(
        name=name,
        variants=(Variant(CONTROL, alias, 1.0),),
        salt="none",
        status="stopped",
        started_at="1970-01-01T00:00:00+00:00",
    )


def bucket_of(salt: str, user_id: int) -> int:
    """The reader's bucket in [0, BUCKETS): sha256 of "{salt}:{user_id}", first 8 bytes."""
    digest = hashlib.sha256(f"{salt}:{int(user_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign_variant(experiment: Experiment, user_id: int) -> Variant:
    """The variant a reader belongs to (by bucket; the status is the caller's business)."""
    return experiment.variant_for_bucket(bucket_of(experiment.salt, user_id))


def _check_name(value: object, what: str) -> None:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidExperimentError(
            f"{what} {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )


def _check_timestamp(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise InvalidExperimentError(f"{what} must be an ISO 8601 string, got {value!r}")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise InvalidExperimentError(f"{what} {value!r} is not an ISO 8601 timestamp") from None
