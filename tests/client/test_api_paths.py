"""Run paths as users write them: every accepted form names the same run, and anything else is a
UsageError that lists the forms, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracklog._api_paths import parse_run_path
from tracklog._errors import UsageError
from tracklog._refs import RunPath

part = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True).filter(lambda p: p != "runs")


@given(entity=part, project=part, run_id=part)
def test_every_form_of_a_path_names_the_same_run(entity: str, project: str, run_id: str) -> None:
    want = RunPath(entity, project, run_id)
    forms = [
        f"{entity}/{project}/{run_id}",
        f"{entity}/{project}/runs/{run_id}",
        f" /{entity}/{project}/runs/{run_id}/ ",
        f"http://127.0.0.1:8080/{entity}/{project}/runs/{run_id}?token=t#x",
        f"https://host/{entity}/{project}/runs/{run_id}/files",
    ]
    for form in forms:
        assert parse_run_path(form) == want, form
    assert parse_run_path(f"{project}/{run_id}", lambda: entity) == want


@given(text=st.text(max_size=200))
def test_any_other_text_is_a_usage_error_or_a_valid_path(text: str) -> None:
    message = ""
    try:
        found = parse_run_path(text, lambda: "me")
    except UsageError as exc:
        message = str(exc)
    else:
        assert isinstance(found, RunPath)
        return
    assert "run path" in message


def test_a_non_str_path_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="a run path must be a str, not int"):
        parse_run_path(3)
