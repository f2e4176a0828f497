"""Simulated readers for A/B tests and the demo: served like real readers, clicking by truth.

Each simulated visit asks the serving layer (``RecommendationService``: the experiment's
hash assignment, the variant's alias, the published list in Redis) for a reader's top-k,
logs one impression per book shown, and clicks each book with probability
``sigmoid(a + b * z + lift[variant])``, where ``z`` is the book's planted true score
standardised over the reader's whole catalogue. A clicked book is added to the shelf with
probability ``shelf_given_click``. Events go through ``serving.events.EventWriter``, the
same path as the API's ``POST /events``, with a simulated clock so that visits spread over
time. It reads and writes Redis through the serving layer, so it lives with the other code
that owns I/O, not in ``models/`` (which never imports ``serving``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.generator import PlantedTruth
from serving.events import Event, EventWriter
from serving.handler import RecommendationService
from serving.store import RecStore

__all__ = ["ClickModel", "SimulationSummary", "simulate_traffic"]


@dataclass(frozen=True)
class ClickModel:
    """How likely a reader acts on a shown book, given its standardised true score."""

    intercept: float = -2.5
    slope: float = 1.0
    shelf_given_click: float = 0.3
    # Extra logit per variant: plants a known difference between identical published lists.
    lift: dict[str, float] = field(default_factory=dict)

    def probability(self, z: np.ndarray, variant: str) -> np.ndarray:
        logit = self.intercept + self.slope * z + self.lift.get(variant, 0.0)
        return 1.0 / (1.0 + np.exp(-logit))


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote: visits, impressions and clicks per variant."""

    visits: dict[str, int]
    impressions: dict[str, int]
    clicks: dict[str, int]
    end_time_s: float


def simulate_traffic(
    store: RecStore,
    experiment: str,
    truth: PlantedTruth,
    user_ids: Sequence[int],
    *,
    k: int = 10,
    visits_per_reader: int = 1,
    click_model: ClickModel | None = None,
    start_time_s: float = 1.8e9,
    seconds_per_visit: float = 1.0,
    seed: int = 0,
    control_alias: str = "champion",
    max_batch: int = 500,
) -> SimulationSummary:
    """Serve ``user_ids`` (in a random order, each ``visits_per_reader`` times) and log events."""
    if k < 1 or visits_per_reader < 1:
        raise ValueError("k and visits_per_reader must be >= 1")
    model = click_model or ClickModel()
    rng = np.random.default_rng(seed)
    users = np.asarray(user_ids, dtype=np.int64)
    # Standardise each reader's true scores over the catalogue: z is comparable across readers.
    scores = truth.scores(users)
    mean = scores.mean(axis=1, keepdims=True)
    sd = scores.std(axis=1, keepdims=True) + 1e-9
    row_of = {int(u): i for i, u in enumerate(users)}
    service = RecommendationService(store, control_alias, experiment=experiment, pointer_ttl_s=0)
    clock = [start_time_s]
    writer = EventWriter(store, max_batch=max_batch, clock=lambda: clock[0])
    visits: dict[str, int] = {}
    impressions: dict[str, int] = {}
    clicks: dict[str, int] = {}
    order = np.repeat(users, visits_per_reader)
    rng.shuffle(order)
    for user in order.tolist():
        recs = service.recommend(user, k)
        books = np.asarray(recs.items, dtype=np.int64)
        if books.size == 0:
            continue
        row = row_of[user]
        known = books <= truth.n_books
        z = np.zeros(books.size)
        z[known] = (scores[row, books[known] - 1] - mean[row, 0]) / sd[row, 0]
        clicked = rng.random(books.size) < model.probability(z, recs.variant)
        shelved = clicked & (rng.random(books.size) < model.shelf_given_click)

        def event(kind: str, book: int, position: int) -> Event:
            return Event(type=kind, user_id=user, book_id=book, variant=recs.variant,  # noqa: B023
                         version=recs.version, experiment=recs.experiment,  # noqa: B023
                         position=position)

        shown = [event("impression", int(b), i) for i, b in enumerate(books.tolist())]
        acted = [event("click", int(books[i]), i) for i in np.flatnonzero(clicked).tolist()]
        acted += [event("add_to_shelf", int(books[i]), i) for i in np.flatnonzero(shelved).tolist()]
        writer.write(shown)
        clock[0] += 0.001  # interactions follow the impression
        if acted:
            writer.write(acted)
        clock[0] += seconds_per_visit
        visits[recs.variant] = visits.get(recs.variant, 0) + 1
        impressions[recs.variant] = impressions.get(recs.variant, 0) + len(shown)
        clicks[recs.variant] = clicks.get(recs.variant, 0) + int(clicked.sum())
    return SimulationSummary(visits, impressions, clicks, clock[0])
