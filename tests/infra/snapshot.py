"""Template snapshots that change only when the architecture does.

Asset hashes (Lambda S3 keys, container image tags, CodeBuild source keys, the image tag
handed to the build custom resource) change with every code edit, so they are masked before
comparing. A mismatch fails with a unified diff; `UPDATE_SNAPSHOTS=1 pytest tests/infra`
rewrites the files.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

SNAPSHOT_DIR = Path(__file__).resolve().parent / "snapshots"
UPDATE_ENV = "UPDATE_SNAPSHOTS"
_ASSET_HASH = re.compile(r"[0-9a-f]{64}")
MASK = "<ASSET_HASH>"


def mask(value: Any) -> Any:
    """Replace every 64-hex asset hash in strings and keys, recursively."""
    if isinstance(value, dict):
        return {_ASSET_HASH.sub(MASK, key): mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask(item) for item in value]
    if isinstance(value, str):
        return _ASSET_HASH.sub(MASK, value)
    return value


def _readable_dashboards(template: dict[str, Any]) -> dict[str, Any]:
    """Dashboard bodies are one long Fn::Join string; store them as indented JSON (tokens shown
    as `{{...}}`) so a changed widget shows up as a few changed lines, not one giant line."""
    result = json.loads(json.dumps(template))
    for resource in result.get("Resources", {}).values():
        body = resource.get("Properties", {}).get("DashboardBody")
        if resource["Type"] != "AWS::CloudWatch::Dashboard" or not isinstance(body, dict) or "Fn::Join" not in body:
            continue
        separator, pieces = body["Fn::Join"]
        text = separator.join(
            piece if isinstance(piece, str) else "{{" + json.dumps(piece, sort_keys=True).replace('"', "'") + "}}"
            for piece in pieces
        )
        resource["Properties"]["DashboardBody"] = {"(Fn::Join, shown parsed)": json.loads(text)}
    return result


def render(template: dict[str, Any]) -> str:
    return json.dumps(mask(_readable_dashboards(template)), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def check_snapshot(name: str, template: dict[str, Any]) -> str | None:
    """None when the snapshot matches (or was rewritten); otherwise a readable failure message."""
    path = SNAPSHOT_DIR / f"{name}.json"
    actual = render(template)
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return None
    if not path.exists():
        return f"no snapshot {path}; create it with: {UPDATE_ENV}=1 pytest tests/infra"
    expected = path.read_text()
    if expected == actual:
        return None
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"snapshots/{name}.json (committed)",
            tofile=f"{name} (synthesized now)",
            n=3,
        )
    )
    return (
        f"template {name} differs from its snapshot. If the change is intended, run\n"
        f"    {UPDATE_ENV}=1 pytest tests/infra\nand commit the snapshot.\n\n{diff}"
    )
