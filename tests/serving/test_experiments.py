"""Experiment configs and the reader -> variant assignment the A/B evaluation recomputes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from serving.experiments import (
    BUCKETS,
    Experiment,
    InvalidExperimentError,
    Variant,
    assign_variant,
    bucket_of,
    control_only,
)

REPO = Path(__file__).resolve().parents[2]


def two_arms(share: float = 0.5, salt: str = "s1") -> Experiment:
    return Experiment(
        "exp1",
        (Variant("control", "champion", 1 - share), Variant("treatment", "challenger", share)),
        salt,
        started_at="2026-11-28T21:30:00+00:00",
    )


def reference_bucket(salt: str, user_id: int) -> int:
    # Alternative test implementation: the documented formula, spelled out.
    digest = hashlib.sha256((salt + ":" + str(user_id)).encode("utf-8")).hexdigest()
    return int(digest[:16], 16) % 10_000


@pytest.mark.parametrize("user_id", [1, 2, 42, 53_424, 2**31 - 1])
def test_bucket_follows_the_documented_formula(user_id: int) -> None:
    assert bucket_of("s1", user_id) == reference_bucket("s1", user_id)


def test_known_buckets_never_change() -> None:
    # Pinned: changing them silently re-randomises every running experiment.
    assert [bucket_of("s1", u) for u in (1, 2, 3)] == [reference_bucket("s1", u) for u in (1, 2, 3)]
    assert (
        bucket_of("goodbooks", 42)
        == int(hashlib.sha256(b"goodbooks:42").hexdigest()[:16], 16) % BUCKETS
    )


def test_assignment_is_the_same_in_another_process_with_another_hash_seed() -> None:
    code = (
        "from serving.experiments import bucket_of\n"
        "print(','.join(str(bucket_of('s1', u)) for u in range(1, 200)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert out.stdout.strip() == ",".join(str(bucket_of("s1", u)) for u in range(1, 200))


def test_split_follows_the_shares() -> None:
    experiment = two_arms(share=0.2)
    counts = Counter(assign_variant(experiment, u).name for u in range(1, 50_001))
    assert counts["treatment"] / 50_000 == pytest.approx(0.2, abs=0.01)
    assert experiment.bucket_range("control") == range(0, 8000)
    assert experiment.bucket_range("treatment") == range(8000, 10_000)


def test_a_new_salt_reshuffles_readers() -> None:
    first, second = two_arms(salt="a"), two_arms(salt="b")
    same = sum(
        assign_variant(first, u).name == assign_variant(second, u).name for u in range(1, 10_001)
    )
    assert same / 10_000 == pytest.approx(0.5, abs=0.03)  # independent, not correlated


def test_every_bucket_has_exactly_one_variant() -> None:
    experiment = Experiment(
        "thirds",
        tuple(Variant(f"v{i}", "champion", 1 / 3) for i in range(3)),
        "salt",
    )
    owners = [experiment.variant_for_bucket(b).name for b in range(BUCKETS)]
    assert Counter(owners) == {"v0": 3333, "v1": 3334, "v2": 3333}
    with pytest.raises(ValueError):
        experiment.variant_for_bucket(BUCKETS)


def test_zero_share_variant_gets_nobody() -> None:
    experiment = two_arms(share=0.0)
    assert {assign_variant(experiment, u).name for u in range(1, 2001)} == {"control"}


def test_json_round_trip_and_stop() -> None:
    experiment = two_arms()
    again = Experiment.from_json(experiment.to_json())
    assert again == experiment
    assert json.loads(experiment.to_json())["variants"][1] == {
        "name": "treatment",
        "alias": "challenger",
        "share": 0.5,
    }
    stopped = experiment.stopped()
    assert not stopped.is_active and stopped.stopped_at is not None
    assert Experiment.from_dict(stopped.to_dict()) == stopped
    assert experiment.aliases == ("champion", "challenger")


def test_control_only_serves_one_alias_to_everyone() -> None:
    default = control_only("champion")
    assert default.control == Variant("control", "champion", 1.0)
    assert not default.is_active


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"name": "x"}', "lacks the field"),
        (
            '{"name": "x", "salt": "s", "started_at": "2026-01-01T00:00:00", '
            '"variants": [{"name": "a", "alias": "champion", "share": 0.7}]}',
            "add up to",
        ),
        (
            '{"name": "x", "salt": "s", "started_at": "2026-01-01T00:00:00", "variants": '
            '[{"name": "a", "alias": "c", "share": 0.5}, {"name": "a", "alias": "d", '
            '"share": 0.5}]}',
            "repeats a variant",
        ),
        (
            '{"name": "x", "salt": "s", "started_at": "2026-01-01T00:00:00", '
            '"variants": [{"name": "a|b", "alias": "champion", "share": 1}]}',
            "variant name",
        ),
        (
            '{"name": "x", "salt": "s", "started_at": "yesterday", '
            '"variants": [{"name": "a", "alias": "champion", "share": 1}]}',
            "ISO 8601",
        ),
        (
            '{"name": "x", "salt": "s", "status": "paused", "started_at": "2026-01-01T00:00:00",'
            ' "variants": [{"name": "a", "alias": "champion", "share": 1}]}',
            "status",
        ),
        (
            '{"name": "x", "salt": "", "started_at": "2026-01-01T00:00:00", '
            '"variants": [{"name": "a", "alias": "champion", "share": 1}]}',
            "salt",
        ),
        (
            '{"name": "x", "salt": "s", "started_at": "2026-01-01T00:00:00", '
            '"variants": [{"name": "a", "alias": "champion", "share": "1"}]}',
            "share",
        ),
        (
            '{"name": "x", "salt": "s", "started_at": "2026-01-01T00:00:00", "variants": 3}',
            "malformed",
        ),
    ],
)
def test_malformed_configs_are_typed_errors(raw: str, message: str) -> None:
    with pytest.raises(InvalidExperimentError, match=message):
        Experiment.from_json(raw)


def test_experiment_is_stdlib_only() -> None:
    code = (
        "import sys, importlib.util\n"
        "spec = importlib.util.spec_from_file_location('exp', 'serving/experiments.py')\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['exp'] = module\n"
        "spec.loader.exec_module(module)\n"
        "third = {'redis', 'pydantic', 'cachetools', 'fastapi', 'starlette'} & set(sys.modules)\n"
        "print(sorted(third))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"
