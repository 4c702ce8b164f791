"""`stacks.config`: every `fewclick:*` context key is typed, defaulted and validated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stacks.config import ALLOWED_INSTANCE_TYPES, ConfigError, FewClickConfig, config_from_context

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    return dict(json.loads(CDK_JSON.read_text())["context"])


def test_cdk_json_lists_every_key_and_is_valid() -> None:
    context = cdk_json_context()
    listed = {key for key in context if key.startswith("fewclick:")}
    assert listed == set(FewClickConfig.context_keys())
    assert json.loads(CDK_JSON.read_text())["app"] == "python3 app.py"
    # cdk.json's values are the documented defaults.
    assert config_from_context(context) == FewClickConfig()


def test_defaults() -> None:
    config = config_from_context({})
    assert config.instance_type == "ml.g4dn.xlarge"
    assert config.image_build == "asset"
    assert config.stack_prefix == "FewClick"
    assert config.user_pool_arn is None and config.alarm_email is None
    assert config.account is None and config.region is None


@pytest.mark.parametrize("unset", ["", "null", " NULL "])
def test_account_and_region_are_unset_from_the_command_line_like_every_optional_key(unset: str) -> None:
    """`-c fewclick:account=null` clears an account that cdk.json sets (the README's rule for optional keys)."""
    config = config_from_context({"fewclick:account": unset, "fewclick:region": unset})
    assert config.account is None and config.region is None
    config = config_from_context({"fewclick:account": "123456789012", "fewclick:region": "eu-west-1"})
    assert (config.account, config.region) == ("123456789012", "eu-west-1")


def test_latency_threshold_is_converted_to_microseconds() -> None:
    config = config_from_context({"fewclick:latencyAlarmP90Ms": 250})
    assert config.latency_alarm_p90_microseconds == 250_000


@pytest.mark.parametrize("instance_type", ALLOWED_INSTANCE_TYPES)
def test_every_allowed_gpu_instance_type_is_accepted(instance_type: str) -> None:
    assert config_from_context({"fewclick:instanceType": instance_type}).instance_type == instance_type


def test_cli_strings_are_parsed() -> None:
    """`cdk deploy -c key=value` passes strings; lists may be comma-separated or JSON."""
    config = config_from_context(
        {
            "fewclick:imageBuckets": "bucket-one, bucket-two",
            "fewclick:uiOrigins": '["https://a.example.com", "http://localhost:8000"]',
            "fewclick:instanceCountMax": "4",
            "fewclick:alarmEmail": "",
        }
    )
    assert config.image_buckets == ("bucket-one", "bucket-two")
    assert config.ui_origins == ("https://a.example.com", "http://localhost:8000")
    assert config.instance_count_max == 4
    assert config.alarm_email is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("instanceType", "ml.t2.medium"),
        ("instanceType", "ml.p3.2xlarge"),
        ("instanceCountMin", 0),
        ("instanceCountMin", "many"),
        ("targetInvocationsPerInstance", 0),
        ("imageBuild", "docker"),
        ("imageBuckets", ["Not_A_Bucket"]),
        ("imageBuckets", ["arn:aws:s3:::images"]),
        ("uiOrigins", ["*"]),
        ("uiOrigins", ["https://label.example.com/"]),
        ("uiOrigins", []),
        ("uiOrigins", ["http://label.example.com"]),  # tokens over plain http: only for localhost
        ("userPoolArn", "eu-west-1_AbCdEf123"),
        ("stageName", "prod stage"),
        ("throttleRateLimit", -1),
        ("throttleBurstLimit", 0),
        ("wafRateLimit", 5),
        ("latencyAlarmP90Ms", 0),
        ("alarmEmail", "nobody"),
        ("stackPrefix", "1Click"),
        ("account", "1234"),
        ("region", "Europe"),
        ("logLevel", "TRACE"),
    ],
)
def test_bad_value_fails_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"fewclick:{key}"):
        config_from_context({f"fewclick:{key}": value})


def test_null_from_the_command_line_means_unset() -> None:
    # cdk.json writes JSON null; `-c fewclick:alarmEmail=null` brings the same as text.
    config = config_from_context({"fewclick:alarmEmail": "null", "fewclick:userPoolArn": "NULL"})
    assert (config.alarm_email, config.user_pool_arn) == (None, None)


def test_plain_http_origins_are_accepted_only_on_this_machine() -> None:
    local = ["http://localhost:8000", "http://127.0.0.1:5173", "https://label.example.com:8443"]
    assert config_from_context({"fewclick:uiOrigins": local}).ui_origins == tuple(local)
    with pytest.raises(ConfigError, match="use https"):
        config_from_context({"fewclick:uiOrigins": ["http://localhost.example.com"]})


def test_max_below_min_names_instance_count_max() -> None:
    with pytest.raises(ConfigError, match="fewclick:instanceCountMax"):
        config_from_context({"fewclick:instanceCountMin": 3, "fewclick:instanceCountMax": 2})


def test_misspelt_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"fewclick:instancetype: unknown key"):
        config_from_context({"fewclick:instancetype": "ml.g5.xlarge"})


def test_other_context_keys_are_ignored() -> None:
    assert config_from_context({"@aws-cdk/core:checkSecretUsage": True}) == FewClickConfig()
