"""Worker processes sharing one study on a real PostgreSQL server.

The server is GOODBOOKS_TEST_POSTGRES_URL (``.ci/run`` sets it when 127.0.0.1:5432
answers), else postgresql+psycopg://postgres@127.0.0.1:5432/test. Each test creates a
database of its own there and drops it afterwards. Without a server answering, the tests
are skipped; in CI (``CI`` set) with the URL set, a server that does not answer fails them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from models.study import OVER_BUDGET, TrialBudget, join_study, open_storage, ran_trials
from models.tuning import KNOWN_GOOD, make_objective
from tests.models.test_tuning import split  # noqa: F401 - the tiny split, a fixture

# The heartbeat and the retry of stale trials are marked experimental in Optuna.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# A worker process: it says "ready" once imported, waits for "go" on stdin (so that two
# workers open the storage and create the study at the same moment), tunes on the tiny
# split of test_tuning.py and prints what it did as JSON. With "slow", building the item
# features of its first trial takes ten minutes: the trial stays RUNNING until it is killed.
WORKER = r"""
import json, sys, time
import numpy as np, pandas as pd, optuna
from models.interactions import temporal_split
from models.study import TrialBudget, join_study, open_storage
from models.tuning import make_objective

config = json.loads(sys.argv[1])
optuna.logging.set_verbosity(optuna.logging.WARNING)
rng = np.random.default_rng(0)
rows = [(u, int(b), 4) for u in range(1, 121)
        for b in rng.choice(np.arange(1 + u % 2, 81, 2), size=15, replace=False)]
split = temporal_split(pd.DataFrame(rows, columns=["user_id", "book_id", "rating"]),
                       book_ids=np.arange(1, 81))
print("ready", flush=True)
sys.stdin.readline()


def features_for(features):
    if config["slow"]:
        print("fitting", flush=True)
        time.sleep(600)


class Taken:
    numbers = []
    def started(self, number, params): self.numbers.append(number)
    def epoch(self, number, epoch, value): pass
    def finished(self, number, state, value): pass


taken = Taken()
storage = open_storage(config["url"], config["heartbeat_s"], config["grace_s"])
joined = join_study(storage, config["study"], seed=7, starts=config["starts"])
budget = TrialBudget(config["trials"])
objective = make_objective(split, features_for, 5, 1, 0, max_epochs=3, patience=3,
                           observer=taken, budget=budget)
joined.study.optimize(objective, n_trials=budget.trials, callbacks=[budget])
print(json.dumps({"created": joined.created, "seed": joined.sampler_seed,
                  "taken": taken.numbers}), flush=True)
"""




@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh database on the test server, dropped after the test."""
    given = os.environ.get("GOODBOOKS_TEST_POSTGRES_URL")
    server = sa.make_url(given or DEFAULT_URL)
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as error:
        admin.dispose()
        message = (f"PostgreSQL at {server.render_as_string(hide_password=True)} does not "
                   f"answer: {str(error).splitlines()[0]}")
        if given and os.environ.get("CI"):
            pytest.fail(message)  # CI named the server: it must answer
        pytest.skip(message)
    name = f"gbtest_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def start_worker(url: str, study: str, trials: int, starts: list[dict], slow: bool = False,
                 heartbeat_s: int = 60, grace_s: int | None = None) -> subprocess.Popen:
    config = {"url": url, "study": study, "trials": trials, "starts": starts, "slow": slow,
              "heartbeat_s": heartbeat_s, "grace_s": grace_s}
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, json.dumps(config)], cwd=ROOT, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    return worker


def go(*workers: subprocess.Popen) -> None:
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()


def report(worker: subprocess.Popen) -> dict:
    out, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def test_two_worker_processes_run_one_study_of_n_trials(postgres_url: str) -> None:
    second = {**KNOWN_GOOD, "loss": "bpr", "no_components": 20}
    starts = [KNOWN_GOOD, second]
    # Both open the fresh database at once: both create its tables (without a retry the
    # loser of that race failed in 9 of 10 tries), then both create the study.
    workers = [start_worker(postgres_url, "shared", 12, starts) for _ in range(2)]
    go(*workers)
    reports = [report(worker) for worker in workers]

    assert sorted(r["created"] for r in reports) == [False, True]  # one creator
    creator, joiner = sorted(reports, key=lambda r: not r["created"])
    assert creator["seed"] == 7 and joiner["seed"] != 7  # the joiner's own draws
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    ran = ran_trials(study)
    assert len(ran) == 12  # the budget is the study's, not each worker's
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in ran)
    # An over-budget trial only arises when both finish at the same moment; it fitted nothing.
    assert all(t.state == TrialState.PRUNED and not t.params
               for t in study.trials if t.user_attrs.get(OVER_BUDGET))
    # Each start ran once, first; no two trials drew the same parameters.
    assert [t.params for t in study.trials[:2]] == starts
    params = [tuple(sorted(t.params.items())) for t in ran]
    assert len(set(params)) == 12
    # Both workers took trials, none twice.
    taken = [set(r["taken"]) for r in reports]
    assert all(taken) and not taken[0] & taken[1]
    assert taken[0] | taken[1] == {t.number for t in ran}


def test_a_killed_workers_trial_fails_after_the_grace_period_and_runs_again(
    postgres_url: str, split  # noqa: F811 - the imported fixture
) -> None:
    # A grace period well beyond the heartbeat: opening the storage and joining the study
    # below must not outlast it on a busy machine before the RUNNING check.
    worker = start_worker(postgres_url, "crash", 5, [KNOWN_GOOD], slow=True, heartbeat_s=1,
                          grace_s=8)
    go(worker)
    assert worker.stdout is not None and worker.stdout.readline().strip() == "fitting"
    worker.kill()  # SIGKILL: no chance to mark its trial
    worker.wait(timeout=30)

    storage = open_storage(postgres_url, heartbeat_s=1, grace_s=8)
    joined = join_study(storage, "crash", seed=7)
    study = joined.study
    assert not joined.created and len(study.trials) == 1  # the start was not enqueued again
    optuna.storages.fail_stale_trials(study)  # its heartbeat is only seconds old
    assert study.trials[0].state == TrialState.RUNNING
    time.sleep(9)  # past the grace period
    budget = TrialBudget(5)
    study.optimize(make_objective(split, lambda config: None, 5, 1, 0, 2, 2, budget=budget),
                   n_trials=1, callbacks=[budget])

    killed, retried = study.trials
    assert killed.state == TrialState.FAIL and killed.params == KNOWN_GOOD
    # The next worker to ask for a trial failed it and ran its parameters once more.
    assert retried.state == TrialState.COMPLETE and retried.params == KNOWN_GOOD
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == killed.number
    assert budget.counted(study) == 1  # the failed trial does not use up the budget
    storage.engine.dispose()
