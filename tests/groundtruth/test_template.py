"""The task template: built with the labeling core inlined, rendered by python-liquid as Ground Truth
would (autoescape on, `grant_read_access` stubbed), and checked for what the page's code reads."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fewclick.groundtruth.template import (
    CORE_JS,
    MAX_TEMPLATE_CHARS,
    TemplateBuildError,
    build_template,
)
from fewclick_contract.labelmap import ANSWER_FIELD, ANSWER_FORMAT, PALETTE

from .helpers import gt_environment

API_URL = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/"
IMAGE = "s3://fewclick-test-images/street/0001.jpg"
PRESIGNED = "https://fewclick-test-images.s3.amazonaws.com/street/0001.jpg?X-Amz-Expires=3600&X-Amz-Signature=abc"


def render(task_input: dict[str, Any], api_url: str = API_URL) -> str:
    env = gt_environment(lambda uri: PRESIGNED if uri == IMAGE else "https://denied.invalid/")
    return str(env.from_string(build_template(api_url)).render(task={"input": task_input}))


class Page(HTMLParser):
    """The few elements the page's script reads, with attribute values as the browser decodes them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, dict[str, str]] = {}
        self.labels: list[str] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.tags: list[str] = []
        self._in_label = False
        self._script: dict[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        if "id" in values:
            self.attrs[values["id"]] = values
        if tag == "li":
            self._in_label = True
            self.labels.append("")
        if tag == "script":
            self._script = values
            self.scripts.append((values, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self._in_label = False
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._in_label:
            self.labels[-1] += data
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def parse(html_text: str) -> Page:
    page = Page()
    page.feed(html_text)
    return page


TASK_INPUT = {"taskObject": IMAGE, "token": "fct1.eyJpbWciOiJ4In0.c2ln", "labels": ["person", "traffic light", "car"]}


def test_rendered_template_carries_the_task_to_the_page() -> None:
    html_text = render(TASK_INPUT)
    page = parse(html_text)
    task = page.attrs["fc-task"]
    assert task["data-image-url"] == PRESIGNED  # '&' survives the autoescape round trip
    assert task["data-image-s3"] == IMAGE
    assert task["data-token"] == TASK_INPUT["token"]
    assert task["data-api-url"] == API_URL
    assert task["data-answer-format"] == ANSWER_FORMAT
    assert json.loads(task["data-palette"]) == list(PALETTE)
    assert page.labels == TASK_INPUT["labels"]
    answer = page.attrs["fc-answer"]
    assert (answer["type"], answer["name"]) == ("hidden", ANSWER_FIELD)
    assert "crowd-form" in page.tags and "crowd-button" not in page.tags
    assert "@FEWCLICK_" not in html_text


def test_the_one_labeling_core_is_inlined_verbatim() -> None:
    page = parse(render(TASK_INPUT))
    modules = [text for attrs, text in page.scripts if attrs.get("type") == "module"]
    assert len(modules) == 1
    module = modules[0]
    core = CORE_JS.read_text(encoding="utf-8")
    # Every line of the core is in the page (only the `export` keywords are dropped).
    for line in core.splitlines():
        assert line.removeprefix("export ") in module
    assert module.count("function createLabeler(") == 1
    assert "window.fewclickTask" in module
    # The only external script is Ground Truth's crowd elements.
    assert [attrs["src"] for attrs, _ in page.scripts if "src" in attrs] == [
        "https://assets.crowd.aws/crowd-html-elements.js"
    ]


def test_values_are_escaped_not_executed() -> None:
    hostile = {**TASK_INPUT, "token": '"><script>alert(1)</script>', "labels": ["<b>x</b>"]}
    html_text = render(hostile)
    assert "<script>alert(1)" not in html_text
    page = parse(html_text)
    assert page.attrs["fc-task"]["data-token"] == hostile["token"]
    assert page.labels == ["<b>x</b>"]


def test_template_size_and_bad_api_urls() -> None:
    assert len(build_template(API_URL)) < MAX_TEMPLATE_CHARS
    for url in ("", 'https://x"onload="alert(1)', "https://x y"):
        with pytest.raises(TemplateBuildError):
            build_template(url)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_page_script_is_valid_javascript(tmp_path: Path) -> None:
    """A syntax error (or a name clash between the core and the glue) would blank the worker's page."""
    module = next(text for attrs, text in parse(render(TASK_INPUT)).scripts if attrs.get("type") == "module")
    script = tmp_path / "page.mjs"
    script.write_text(module, encoding="utf-8")
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
