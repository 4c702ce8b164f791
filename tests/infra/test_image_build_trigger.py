"""The custom-resource handlers that run the CodeBuild image build during `cdk deploy`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

HANDLER = Path(__file__).resolve().parents[2] / "stacks/constructs/image_build_trigger/handler.py"


class _ImageNotFound(Exception):
    pass


class FakeClients:
    def __init__(self, *, image_exists: bool = False, status: str = "IN_PROGRESS") -> None:
        self.image_exists = image_exists
        self.status = status
        self.started: list[dict[str, Any]] = []

    # ecr
    exceptions = SimpleNamespace(ImageNotFoundException=_ImageNotFound)

    def describe_images(self, **_: Any) -> dict[str, Any]:
        if not self.image_exists:
            raise _ImageNotFound()
        return {"imageDetails": [{}]}

    # codebuild
    def start_build(self, **kwargs: Any) -> dict[str, Any]:
        self.started.append(kwargs)
        return {"build": {"id": "fewclick-build:1"}}

    def batch_get_builds(self, ids: list[str]) -> dict[str, Any]:
        return {"builds": [{"id": ids[0], "buildStatus": self.status, "logs": {"deepLink": "https://logs"}}]}


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("PROJECT_NAME", "fewclick-build")
    monkeypatch.setenv("REPOSITORY_NAME", "fewclick-model")
    spec = importlib.util.spec_from_file_location("image_build_trigger_handler", HANDLER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "image_build_trigger_handler", module)
    spec.loader.exec_module(module)
    return module


def _use(monkeypatch: pytest.MonkeyPatch, handler: ModuleType, clients: FakeClients) -> None:
    monkeypatch.setattr(handler.boto3, "client", lambda _name: clients)


def _event(request_type: str, **extra: Any) -> dict[str, Any]:
    return {"RequestType": request_type, "ResourceProperties": {"ImageTag": "abc123"}, **extra}


def test_create_starts_a_build_with_the_tag(monkeypatch: pytest.MonkeyPatch, handler: ModuleType) -> None:
    clients = FakeClients()
    _use(monkeypatch, handler, clients)
    result = handler.on_event(_event("Create"), None)
    assert result == {"PhysicalResourceId": "fewclick-model:abc123", "Data": {"BuildId": "fewclick-build:1"}}
    assert clients.started[0]["projectName"] == "fewclick-build"
    assert clients.started[0]["environmentVariablesOverride"][0] == {
        "name": "IMAGE_TAG",
        "value": "abc123",
        "type": "PLAINTEXT",
    }


def test_existing_tag_skips_the_build(monkeypatch: pytest.MonkeyPatch, handler: ModuleType) -> None:
    clients = FakeClients(image_exists=True)
    _use(monkeypatch, handler, clients)
    result = handler.on_event(_event("Update"), None)
    assert not clients.started
    assert handler.is_complete({**_event("Update"), **result}, None) == {"IsComplete": True}


def test_delete_keeps_images(monkeypatch: pytest.MonkeyPatch, handler: ModuleType) -> None:
    clients = FakeClients()
    _use(monkeypatch, handler, clients)
    assert handler.on_event(_event("Delete", PhysicalResourceId="x:y"), None) == {"PhysicalResourceId": "x:y"}
    assert not clients.started


@pytest.mark.parametrize(("status", "complete"), [("IN_PROGRESS", False), ("SUCCEEDED", True)])
def test_is_complete_follows_the_build(
    monkeypatch: pytest.MonkeyPatch, handler: ModuleType, status: str, complete: bool
) -> None:
    _use(monkeypatch, handler, FakeClients(status=status))
    event = _event("Create", Data={"BuildId": "fewclick-build:1"})
    assert handler.is_complete(event, None) == {"IsComplete": complete}


def test_failed_build_fails_the_deployment(monkeypatch: pytest.MonkeyPatch, handler: ModuleType) -> None:
    _use(monkeypatch, handler, FakeClients(status="FAILED"))
    with pytest.raises(RuntimeError, match="ended FAILED"):
        handler.is_complete(_event("Create", Data={"BuildId": "fewclick-build:1"}), None)
