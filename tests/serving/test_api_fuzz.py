"""Property-based fuzzing of the API against its own OpenAPI document: never a 5xx."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from serving.api import create_app
from serving.config import ServingConfig
from serving.store import RecStore

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

KEY = "fuzz-key"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(store: RecStore, publish):  # type: ignore[no-untyped-def]
    """The app on the test's store with one published version, as schemathesis sees it."""
    store.set_alias("champion", publish(readers=range(1, 50), books=range(1, 50)))
    config = ServingConfig(
        json_logs=False, access_log=False, events_api_key=KEY, events_max_batch=20
    )
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(config, store))


# Cases are drawn with a plain @given over every operation: schemathesis's own pytest
# parametrisation (from_fixture) does not run under pytest 9.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_spec_and_never_fails(api_schema, mode: GenerationMode) -> None:  # type: ignore[no-untyped-def]
    @given(case=api_schema.as_strategy(generation_mode=mode))
    @settings(
        max_examples=60,
        deadline=None,
        derandomize=True,  # the same examples every run: a failure reproduces
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case) -> None:  # type: ignore[no-untyped-def]
        case.call_and_validate(headers={"X-API-Key": KEY}, checks=CHECKS)

    call()
