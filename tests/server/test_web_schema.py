"""The web API fuzzed from its own OpenAPI schema (schemathesis): no request, however odd, gets a 500,
and every 200 answer matches the schema it publishes.

The server is real (uvicorn on a free port) over a real SQLite file holding a few runs with history,
console output, files and system metrics. Mutations carry the header the cross-site guard asks for, so
the fuzzing reaches the handlers behind it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tracklog_server import RunKey, StoreServer

from .helpers import (
    STDOUT,
    RunWriter,
    file_records,
    history_record,
    output_record,
    start_record,
    system_record,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreServer]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "store.db"
    srv = StoreServer(f"sqlite:///{path}", port=0, http_port=0)
    srv.start()
    for i in range(3):
        key = RunKey("alice", "mnist", f"run{i}")
        srv.store.ingest(
            key,
            RunWriter(key).frames(
                start_record(key, name=f"run-{i}", config={"lr": 0.1 * i, "opt": "adam"}, tags=["t"]),
                history_record([(s, {"loss": 1.0 / (s + 1), "acc": s / 100}) for s in range(100)]),
                output_record([(1_700_000_000.0 + s, STDOUT, f"line {s}") for s in range(20)]),
                *file_records("notes.txt", 1, b"hello\n"),
                system_record([1_700_000_000.0, 1_700_000_010.0], {"system/cpu": [1.0, 2.0]}),
            ),
        )
    yield srv
    srv.stop(grace=1)


def test_no_request_to_the_api_gets_a_server_error(fuzzed_server: StoreServer) -> None:
    # Driven by hand, operation by operation: schemathesis' pytest loader does not run on this pytest.
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.http_url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # every endpoint of the API is in the schema
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=fuzzed_server.http_url,
                headers={"X-Tracklog-Request": "1"},
                checks=[not_a_server_error, response_schema_conformance],
            )

        fuzz()
