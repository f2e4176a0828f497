"""The experiment design: what only the evaluation needs, stored beside the experiment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from models.schema import INTERACTION_TYPES

Action = Literal["promote", "stop", "continue"]


class InvalidDesignError(ValueError):
    """An experiment design that cannot be evaluated; the message says which field."""


class EventLike(Protocol):
    """What the measurement reads of an event (serving.events.StoredEvent has it)."""

    type: str
    user_id: int
    book_id: int
    variant: str
    version: str
    ts_ms: int
    experiment: str | None


@dataclass(frozen=True)
class Guardrail:
    """A rate of one interaction type the treatment may not drop by more than a share."""

    event_type: str
    max_relative_drop: float

    def __post_init__(self) -> None:
        if self.event_type not in INTERACTION_TYPES:
            raise InvalidDesignError(
                f"guardrail event_type must be one of {INTERACTION_TYPES}, got "
                f"{self.event_type!r}"
            )
        if not 0 < self.max_relative_drop <= 1:
            raise InvalidDesignError(
                f"guardrail max_relative_drop must be in (0, 1], got {self.max_relative_drop}"
            )


@dataclass(frozen=True)
class ExperimentDesign:
    """How an experiment is judged: sample, duration, metric, guardrails and error rate."""

    control: str = "control"
    treatment: str = "treatment"
    min_sample: int = 1000
    max_duration_s: float = 14 * 86400.0
    primary_metric: tuple[str, ...] = INTERACTION_TYPES
    guardrails: tuple[Guardrail, ...] = ()
    alpha: float = 0.05
    # Prior variance of the effect under the alternative; ~(expected effect)^2 tunes power.
    mixture_variance: float = 1e-4
    attribution_window_s: float = 3600.0
    srm_threshold: float = 0.001

    def __post_init__(self) -> None:
        if self.control == self.treatment:
            raise InvalidDesignError("control and treatment must be different variants")
        if self.min_sample < 1:
            raise InvalidDesignError(f"min_sample must be >= 1, got {self.min_sample}")
        if self.max_duration_s <= 0 or self.attribution_window_s <= 0:
            raise InvalidDesignError("max_duration_s and attribution_window_s must be > 0")
        if not self.primary_metric or set(self.primary_metric) - set(INTERACTION_TYPES):
            raise InvalidDesignError(
                f"primary_metric must be a non-empty subset of {INTERACTION_TYPES}, got "
                f"{self.primary_metric!r}"
            )
        if not 0 < self.alpha < 1 or not 0 < self.srm_threshold < 1:
            raise InvalidDesignError("alpha and srm_threshold must be in (0, 1)")
        if self.mixture_variance <= 0:
            raise InvalidDesignError("mixture_variance must be > 0")

    def to_json(self) -> str:
        """The JSON stored under ``{p}experiment:{name}:design``."""
        raw = asdict(self)
        raw["primary_metric"] = list(self.primary_metric)
        raw["guardrails"] = [asdict(g) for g in self.guardrails]
        return json.dumps(raw, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExperimentDesign:
        """Build a design from a mapping (stored JSON or a flow parameter)."""
        if not isinstance(raw, Mapping):
            raise InvalidDesignError(f"a design must be a JSON object, got {raw!r:.80}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidDesignError(f"unknown design fields {unknown}; known: {sorted(known)}")
        values = dict(raw)
        if "primary_metric" in values:
            metric = values["primary_metric"]
            values["primary_metric"] = (metric,) if isinstance(metric, str) else tuple(metric)
        if "guardrails" in values:
            try:
                values["guardrails"] = tuple(
                    g if isinstance(g, Guardrail) else Guardrail(**g) for g in values["guardrails"]
                )
            except TypeError as exc:
                raise InvalidDesignError(f"malformed guardrail: {exc}") from None
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> ExperimentDesign:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidDesignError(f"design is not valid JSON: {exc}") from None


def design_key(prefix: str, name: str) -> str:
    """Where an experiment's design is stored, beside ``{prefix}experiment:{name}``."""
    return f"{prefix}experiment:{name}:design"
