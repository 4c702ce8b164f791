"""The one Content-Type rule the proxy, the local labels API and the model server share."""

from __future__ import annotations

import pytest

from fewclick_contract.media_type import json_content_type_problem


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "Application/JSON; charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json;",
        "application/vnd.fewclick+json",
    ],
)
def test_json_and_no_declared_type_are_taken(content_type: str | None) -> None:
    assert json_content_type_problem(content_type) is None


@pytest.mark.parametrize(
    ("content_type", "says"),
    [
        ("application/x-www-form-urlencoded", "must be application/json, not 'application/x-www-form-urlencoded'"),
        ("text/plain;charset=UTF-8", "not 'text/plain'"),
        ("multipart/form-data; boundary=x", "not 'multipart/form-data'"),
        ("application/jsonp", "not 'application/jsonp'"),
        ("json", "not 'json'"),
        ("application/json; charset=utf-16", "UTF-8 application/json, not charset 'utf-16'"),
    ],
)
def test_anything_else_is_named_in_the_refusal(content_type: str, says: str) -> None:
    problem = json_content_type_problem(content_type)
    assert problem is not None and says in problem
