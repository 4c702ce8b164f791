"""Constants and helpers shared by the Ground Truth tests (imported as tests.groundtruth.helpers)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from liquid import Environment, StrictUndefined

REPO_ROOT = Path(__file__).resolve().parents[2]
GT_ASSET = REPO_ROOT / "lambda" / "groundtruth"
EVENTS = Path(__file__).resolve().parent / "events"

if str(GT_ASSET) not in sys.path:
    sys.path.insert(0, str(GT_ASSET))

SECRET = "x" * 20 + "fewclick-test-secret-0123456789abcdef"  # >= 32 bytes, like the generated one
IMAGE_BUCKET = "fewclick-test-images"
LABELING_BUCKET = "fewclick-labeling-test"
JOB_NAME = "fewclick-20250101-120000"
JOB_ARN = f"arn:aws:sagemaker:us-east-1:111122223333:labeling-job/{JOB_NAME}"


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


class LambdaContext:
    """What Powertools' inject_lambda_context reads from the real context object."""

    function_name = "fewclick-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:111122223333:function:fewclick-test"
    memory_limit_in_mb = 512
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/fewclick-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def gt_environment(grant_read_access: Callable[[str], str]) -> Environment:
    """Liquid as Ground Truth runs it: inputs HTML-escaped by default, plus its extra filters
    (`grant_read_access`, `to_json`: "Variable filters" in sms-custom-templates-step2), stubbed."""
    env = Environment(autoescape=True, undefined=StrictUndefined)
    env.filters["grant_read_access"] = grant_read_access
    env.filters["to_json"] = lambda value: json.dumps(value)
    return env
