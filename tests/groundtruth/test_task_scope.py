"""The proxy's task-token scope (fewclick_proxy.task_scope): a task request may touch its own image only."""

from __future__ import annotations

from typing import Any

import pytest

from fewclick_contract.api import ApiError, SegmentRequest
from fewclick_contract.task_token import TASK_SEGMENT_PATH

IMAGE_A = "s3://fewclick-test-images/street/0001.jpg"
IMAGE_B = "s3://fewclick-test-images/street/0002.jpg"
SECRET = b"session-secret-for-tests"
POINTS = [{"x": 1, "y": 1}, {"x": 5, "y": 1}, {"x": 3, "y": 0}, {"x": 3, "y": 4}]


def event(resource: str, authorizer: dict[str, Any] | None) -> dict[str, Any]:
    return {"resource": resource, "requestContext": {"resourcePath": resource, "authorizer": authorizer}}


def session_for(uri: str | None, img: str | None = None) -> str:
    from fewclick_proxy.session_token import SessionToken, encode_token

    token = SessionToken(
        sm="sm-1", img=img or (f"{uri}#etag1" if uri else "sha256:abc"), h=10, w=10, crop="c" * 16, s3=uri
    )
    return encode_token(token, SECRET)


def request(**fields: Any) -> SegmentRequest:
    return SegmentRequest.model_validate({"extremePoints": POINTS, **fields})


def test_routes_and_context_decide_the_scope() -> None:
    from fewclick_proxy.task_scope import task_image

    assert task_image(event(TASK_SEGMENT_PATH, {"taskImage": IMAGE_A})) == IMAGE_A
    assert task_image(event("/v1/segment", {"claims": {"sub": "u"}})) is None  # Cognito route: unconfined
    assert task_image(event("/v1/segment", None)) is None
    for authorizer in (None, {}, {"taskImage": ""}):
        with pytest.raises(ApiError) as raised:  # the task route never runs unconfined
            task_image(event(TASK_SEGMENT_PATH, authorizer))
        assert raised.value.status == 401

    # The authorizer's Allow is cached for minutes per token: its verified expiry (text, as API
    # Gateway passes context values) is checked again here, to the second.
    import time

    future, past = str(int(time.time()) + 60), str(int(time.time()) - 1)
    assert task_image(event(TASK_SEGMENT_PATH, {"taskImage": IMAGE_A, "taskExpiresAt": future})) == IMAGE_A
    with pytest.raises(ApiError, match="expired") as raised:
        task_image(event(TASK_SEGMENT_PATH, {"taskImage": IMAGE_A, "taskExpiresAt": past}))
    assert raised.value.status == 401


def test_the_task_path_is_confined_whatever_resource_matched_it_and_an_odd_context_is_no_context() -> None:
    """The router dispatches on the path: a greedy resource (`/{proxy+}`) matching the task path
    must not skip the check, and a requestContext that is not an object is a 401, not a 500."""
    from fewclick_proxy.task_scope import task_image

    greedy = {"resource": "/{proxy+}", "path": TASK_SEGMENT_PATH, "requestContext": {"resourcePath": "/{proxy+}"}}
    with pytest.raises(ApiError) as raised:
        task_image(greedy)
    assert raised.value.status == 401
    for context in ("x", 42, ["a"]):
        with pytest.raises(ApiError) as raised:
            task_image({"resource": TASK_SEGMENT_PATH, "path": TASK_SEGMENT_PATH, "requestContext": context})
        assert raised.value.status == 401
        assert task_image({"resource": "/v1/segment", "path": "/v1/segment", "requestContext": context}) is None


def test_own_image_and_own_session_pass() -> None:
    from fewclick_proxy.task_scope import enforce_task_scope

    enforce_task_scope(IMAGE_A, request(image={"s3Uri": IMAGE_A}), SECRET)
    enforce_task_scope(IMAGE_A, request(sessionId=session_for(IMAGE_A)), SECRET)
    enforce_task_scope(IMAGE_A, request(image={"s3Uri": IMAGE_A}, sessionId=session_for(IMAGE_A)), SECRET)


@pytest.mark.parametrize(
    "fields",
    [
        {"image": {"s3Uri": IMAGE_B}},  # another image
        {"image": {"base64": "iVBORw0KGgoAAAANSUhEUg=="}},  # inline: cannot be tied to the token
        {"sessionId": "SESSION_B"},  # a session of another image, replayed under A's token
        {"sessionId": "SESSION_INLINE"},  # a session of an inline image
        {"sessionId": "SESSION_MIXED"},  # s3 says A, but the features are another image's
        {"image": {"s3Uri": IMAGE_A}, "sessionId": "SESSION_B"},
    ],
)
def test_other_images_and_sessions_are_refused_with_403(fields: dict[str, Any]) -> None:
    from fewclick_proxy.task_scope import enforce_task_scope

    sessions = {
        "SESSION_B": session_for(IMAGE_B),
        "SESSION_INLINE": session_for(None),
        "SESSION_MIXED": session_for(IMAGE_A, img=f"{IMAGE_B}#etag2"),
    }
    if "sessionId" in fields:
        fields = {**fields, "sessionId": sessions[fields["sessionId"]]}
    with pytest.raises(ApiError) as raised:
        enforce_task_scope(IMAGE_A, request(**fields), SECRET)
    assert raised.value.status == 403
    assert raised.value.code.value == "ACCESS_DENIED"


def test_task_route_answers_any_origin() -> None:
    from fewclick_proxy.task_scope import with_task_cors

    response = {
        "statusCode": 403,
        "headers": {"Access-Control-Allow-Origin": "https://label.example.com"},
        "multiValueHeaders": {"Access-Control-Allow-Origin": ["https://label.example.com"]},
        "body": "{}",
    }
    task = with_task_cors(event(TASK_SEGMENT_PATH, None), response)
    assert task["headers"]["Access-Control-Allow-Origin"] == "*"
    assert task["headers"]["Access-Control-Expose-Headers"] == "Retry-After"
    assert "Access-Control-Allow-Origin" not in task["multiValueHeaders"]
    assert with_task_cors(event("/v1/segment", None), response) is response


def test_the_ui_route_lets_the_configured_origins_read_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI backs off by Retry-After on 429/503; a browser hides it from a cross-origin page
    unless the response exposes it (the local gateway does the same)."""
    from fewclick_proxy import handler

    monkeypatch.setenv("ALLOWED_ORIGINS", "https://label.example.com, https://qa.example.com")
    cors = handler._cors()
    assert cors is not None
    for origin in ("https://label.example.com", "https://qa.example.com"):
        headers = cors.to_dict(origin)
        assert headers["Access-Control-Allow-Origin"] == origin
        assert headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert "Access-Control-Allow-Origin" not in cors.to_dict("https://evil.example.com")
