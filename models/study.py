"""One Optuna study shared by worker processes: its storage, who creates it, its budget.

Several ``goodbooks train`` runs pointed at one database and one study name tune together.
The first creates the study and enqueues its starts; the others join it with sampler
seeds of their own, wait until the starts are enqueued, and share a trial budget. On a
database server a worker that dies mid-trial is noticed by its heartbeat stopping.
"""

from __future__ import annotations

import logging
import secrets
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import optuna
import sqlalchemy.exc

log = logging.getLogger(__name__)

# Set on a study by its creator once its starts are enqueued; joiners wait for it.
STARTS_ENQUEUED = "starts_enqueued"


def open_storage(
    url: str | None,
    heartbeat_s: int | None = 60,
    grace_s: int | None = None,
    attempts: int = 5,
) -> str | optuna.storages.BaseStorage | None:
    """The study storage at ``url``, made ready for workers sharing it on a database server.

    ``None`` (in memory) and SQLite URLs (one machine) come back as they are. On a server
    (PostgreSQL): pooled connections are checked before use, since the server may drop one
    left idle through a long trial; a running trial records a heartbeat every
    ``heartbeat_s`` seconds, and one silent for ``grace_s`` (default twice that: its worker
    was killed or lost its machine) is failed by the next worker asking for a trial, which
    queues its parameters to run once more. The first workers on a new database create its
    tables: when two do so at the same moment, the one that loses the race tries again.
    """
    if url is None or url.startswith("sqlite"):
        return url
    attempt = 1
    while True:
        try:
            with warnings.catch_warnings():
                # The heartbeat and its callback are marked experimental.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=heartbeat_s,
                    grace_period=grace_s,
                    heartbeat_stale_trial_callback=(
                        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
                        if heartbeat_s is not None else None
                    ),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Another process created a table, a type or the version row in between.
            if attempt >= attempts:
                raise
            time.sleep(0.2 * attempt)
            attempt += 1


@dataclass(frozen=True)
class JoinedStudy:
    """A study as one worker process holds it."""

    study: optuna.Study
    created: bool  # this process created the study (and enqueued its starts)
    sampler_seed: int


def join_study(
    storage: str | optuna.storages.BaseStorage | None,
    study_name: str,
    seed: int,
    pruning: bool = True,
    starts: Sequence[Mapping[str, object]] = (),
    wait_s: float = 60.0,
) -> JoinedStudy:
    """Create a maximising study, or join it when it exists: TPE, median pruning.

    Exactly one process creates a study (the storage's unique study name decides), and
    only that one enqueues ``starts``: workers starting at the same moment run each start
    once. The creator samples with ``seed``. Any process joining the study (another worker,
    or a later run resuming it) samples with a seed of its own: with the same seed its
    first draws, random until TPE has enough trials, would replay the creator's. A joiner
    waits (up to ``wait_s``) until the creator has enqueued the starts, so they run first.
    """
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
        if pruning else optuna.pruners.NopPruner()
    )
    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, direction="maximize",
            sampler=_sampler(seed), pruner=pruner, load_if_exists=False,
        )
    except optuna.exceptions.DuplicatedStudyError:
        own_seed = secrets.randbelow(2**31)
        study = optuna.load_study(study_name=study_name, storage=storage,
                                  sampler=_sampler(own_seed), pruner=pruner)
        wait_for_starts(study, wait_s)
        return JoinedStudy(study=study, created=False, sampler_seed=own_seed)
    for params in starts:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    study.set_user_attr(STARTS_ENQUEUED, len(starts))
    return JoinedStudy(study=study, created=True, sampler_seed=seed)


def wait_for_starts(study: optuna.Study, wait_s: float, poll_s: float = 0.1) -> bool:
    """Wait until the study's creator has enqueued its starts; whether it had.

    Creating a study and enqueuing its starts are separate transactions: a worker joining
    in between would otherwise run a draw of its own before the starts and, with a small
    budget, leave a start over budget. A study that already ran a trial (resumed, or
    created before this handshake existed) is not waited for. After ``wait_s`` without the
    mark (its creator died in between) the worker goes on, and says so in the log.
    """
    deadline = time.monotonic() + wait_s
    while True:
        if STARTS_ENQUEUED in study.user_attrs or any(
                t.state != optuna.trial.TrialState.WAITING
                for t in study.get_trials(deepcopy=False)):
            return True
        if time.monotonic() >= deadline:
            log.warning("study %s: its creator has not enqueued its starts after %.0f s; "
                        "going on without waiting for them", study.study_name, wait_s)
            return False
        time.sleep(poll_s)


def _sampler(seed: int) -> optuna.samplers.TPESampler:
    # The constant liar counts trials still running elsewhere as poor, so parallel workers
    # do not all draw near the same promising point (the default since Optuna 5).
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


# A trial turned away because the study's budget was spent (user attribute set to True).
OVER_BUDGET = "over_budget"


class TrialBudget:
    """A study's trial budget, shared by every worker on it: ``trials`` in all.

    A trial counts once it exists (waiting, running or finished), unless it failed (a
    worker lost, an arithmetic error) or was turned away as over budget. As a callback it
    stops its worker once the count reaches the budget. That alone can overshoot: two
    workers finishing at the same moment both see room for one more trial. So a trial
    also asks ``admits`` before it fits anything: trial numbers are handed out in order
    under a lock on the study, so every trial before it already exists, and when those
    reach the budget it ends at once, pruned and marked ``over_budget``.
    """

    def __init__(self, trials: int) -> None:
        if trials < 1:
            raise ValueError(f"a study's trial budget is at least 1, not {trials}")
        self.trials = trials

    def counted(self, study: optuna.Study, before: int | None = None) -> int:
        """Trials that count against the budget (those numbered below ``before``)."""
        return sum(
            1 for t in study.get_trials(deepcopy=False)
            if (before is None or t.number < before)
            and t.state != optuna.trial.TrialState.FAIL and not t.user_attrs.get(OVER_BUDGET)
        )

    def admits(self, trial: optuna.Trial) -> bool:
        return self.counted(trial.study, before=trial.number) < self.trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.counted(study) >= self.trials:
            study.stop()


def ran_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's trials that were taken: not waiting, not turned away as over budget."""
    return [t for t in study.get_trials(deepcopy=False)
            if t.state != optuna.trial.TrialState.WAITING and not t.user_attrs.get(OVER_BUDGET)]
