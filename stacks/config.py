"""The deployment configuration: every `fewclick:*` CDK context key, typed and validated once.

`app.py` calls `load_config(app.node)` and passes plain values down; stacks and constructs
never read context themselves. A bad value fails synth with a `ConfigError` that names the
context key (for example `fewclick:instanceType`), so a typo in `cdk.json` or `-c` is caught
before any construct exists.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fewclick_contract.labelmap import validate_labels

CONTEXT_PREFIX = "fewclick:"

# GPU instances with enough memory for the encoder; all three carry local NVMe storage,
# which is why the endpoint config sets no KmsKeyId (SageMaker rejects it for such types).
ALLOWED_INSTANCE_TYPES = ("ml.g4dn.xlarge", "ml.g5.xlarge", "ml.g6.xlarge")
InstanceType = Literal["ml.g4dn.xlarge", "ml.g5.xlarge", "ml.g6.xlarge"]

# S3 bucket naming rules (3-63 chars, lowercase, digits, dots, hyphens, no leading/trailing dot/hyphen).
_BUCKET_NAME = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# A browser origin: scheme + host (+ port), no path, no trailing slash, never "*".
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_LOCAL_HOST = re.compile(r"^(localhost|127\.0\.0\.1)(:[0-9]{1,5})?$")
# Words Cognito refuses inside a hosted-UI domain prefix.
COGNITO_RESERVED_WORDS = ("aws", "amazon", "cognito")
_USER_POOL_ARN = re.compile(r"^arn:aws[a-z-]*:cognito-idp:[a-z0-9-]+:[0-9]{12}:userpool/[a-z0-9-]+_[A-Za-z0-9]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_WORKTEAM_ARN = re.compile(r"^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:[0-9]{12}:workteam/[A-Za-z0-9_./-]+$")


class ConfigError(ValueError):
    """A `fewclick:*` context value is invalid; the message names the key."""


class ContextReader(Protocol):
    """What `load_config` needs from a construct node (keeps this module free of jsii)."""

    def get_all_context(self, defaults: Any = None) -> Any: ...


def _split_list(value: Any) -> Any:
    """`-c fewclick:imageBuckets=a,b` arrives as a string; cdk.json gives a real list."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


def _empty_to_none(value: Any) -> Any:
    """An empty string (e.g. `-c fewclick:alarmEmail=`) or `null` (as cdk.json writes it, here
    arriving as text from `-c fewclick:alarmEmail=null`) means "not set"."""
    if isinstance(value, str) and value.strip().lower() in ("", "null"):
        return None
    return value


def _check_bucket(name: str) -> str:
    if not _BUCKET_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid S3 bucket name (a name, not an ARN or s3:// URL)")
    return name


def _check_origin(origin: str) -> str:
    if not _ORIGIN.match(origin):
        raise ValueError(f"{origin!r} is not a browser origin like https://label.example.com (no path, no '*')")
    # Labelers' ID tokens travel from that page: plain http only for a page on the developer's machine.
    if origin.startswith("http://") and _LOCAL_HOST.match(origin[len("http://") :]) is None:
        raise ValueError(f"{origin!r}: use https (plain http only for localhost / 127.0.0.1)")
    return origin


def _check_worker_domain_prefix(prefix: str | None) -> str | None:
    if prefix is not None:
        reserved = [word for word in COGNITO_RESERVED_WORDS if word in prefix]
        if reserved:
            raise ValueError(f"{prefix!r} contains {reserved[0]!r}, which Cognito refuses in a domain prefix")
    return prefix


def _check_user_pool_arn(arn: str | None) -> str | None:
    if arn is not None and not _USER_POOL_ARN.match(arn):
        raise ValueError(f"{arn!r} is not a Cognito user pool ARN")
    return arn


def _check_email(email: str | None) -> str | None:
    if email is not None and not _EMAIL.match(email):
        raise ValueError(f"{email!r} is not an e-mail address")
    return email


def _check_workteam_arn(arn: str | None) -> str | None:
    if arn is not None and not _WORKTEAM_ARN.match(arn):
        raise ValueError(f"{arn!r} is not a SageMaker workteam ARN")
    return arn


def _check_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    # The same rules as the job launcher's --labels (unique, no BACKGROUND, safe characters).
    return tuple(validate_labels(labels))


BucketName = Annotated[str, AfterValidator(_check_bucket)]
Origin = Annotated[str, AfterValidator(_check_origin)]
StringList = BeforeValidator(_split_list)
OptionalString = BeforeValidator(_empty_to_none)


class FewClickConfig(BaseModel):
    """All deploy-time settings. Field aliases are the context key suffixes after `fewclick:`."""

    # Unknown `fewclick:*` keys are errors: a misspelt key would otherwise silently use a default.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    stack_prefix: str = Field(
        "FewClick",
        alias="stackPrefix",
        pattern=r"^[A-Za-z][A-Za-z0-9-]{0,63}$",
        description="Prefix of the CloudFormation stack names.",
    )
    account: Annotated[str | None, OptionalString] = Field(
        None,
        alias="account",
        pattern=r"^[0-9]{12}$",
        description="Target account; unset = environment-agnostic stacks.",
    )
    region: Annotated[str | None, OptionalString] = Field(
        None,
        alias="region",
        pattern=r"^[a-z]{2}(-[a-z]+)+-[0-9]$",
        description="Target region; unset = environment-agnostic stacks.",
    )
    instance_type: InstanceType = Field(
        "ml.g4dn.xlarge", alias="instanceType", description="SageMaker GPU instance type."
    )
    instance_count_min: int = Field(1, alias="instanceCountMin", ge=1, le=20)
    instance_count_max: int = Field(2, alias="instanceCountMax", ge=1, le=20)
    target_invocations_per_instance: int = Field(
        300,
        alias="targetInvocationsPerInstance",
        ge=1,
        description="Autoscaling target: invocations per instance per minute.",
    )
    image_build: Literal["asset", "codebuild"] = Field("asset", alias="imageBuild")
    image_buckets: Annotated[tuple[BucketName, ...], StringList] = Field((), alias="imageBuckets")
    ui_origins: Annotated[tuple[Origin, ...], StringList] = Field(
        ("http://localhost:8000",), alias="uiOrigins", min_length=1
    )
    user_pool_arn: Annotated[str | None, OptionalString, AfterValidator(_check_user_pool_arn)] = Field(
        None, alias="userPoolArn"
    )
    stage_name: str = Field("prod", alias="stageName", pattern=r"^[A-Za-z0-9_]{1,128}$")
    throttle_rate_limit: float = Field(50.0, alias="throttleRateLimit", gt=0, le=10000)
    throttle_burst_limit: int = Field(100, alias="throttleBurstLimit", ge=1, le=5000)
    # WAF counts requests per source IP over a 5-minute window; AWS allows 10..2e9.
    waf_rate_limit: int = Field(2000, alias="wafRateLimit", ge=10, le=2_000_000_000)
    latency_alarm_p90_ms: float = Field(
        300.0,
        alias="latencyAlarmP90Ms",
        gt=0,
        le=60_000,
        description="Alarm when SageMaker ModelLatency p90 exceeds this many milliseconds.",
    )
    alarm_email: Annotated[str | None, OptionalString, AfterValidator(_check_email)] = Field(None, alias="alarmEmail")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="logLevel")
    # --- Ground Truth integration (stacks/labeling_stack.py, README.md "SageMaker Ground Truth integration") ---
    labeling: bool = Field(
        False, alias="labeling", description="Deploy <prefix>-Labeling and the API's task-token route."
    )
    label_classes: Annotated[tuple[str, ...], StringList, AfterValidator(_check_labels)] = Field(
        ("object",), alias="labelClasses", description="Labels a job gets when `labeling-job create` has no --labels."
    )
    # Tasks can wait up to 30 days for a worker (TaskAvailabilityLifetimeInSeconds) plus 8 h of work.
    task_token_max_ttl_hours: int = Field(7 * 24, alias="taskTokenMaxTtlHours", ge=1, le=30 * 24 + 8)
    workteam_arn: Annotated[str | None, OptionalString, AfterValidator(_check_workteam_arn)] = Field(
        None, alias="workteamArn", description="Existing private work team; becomes the job launcher's default."
    )
    create_workteam: bool = Field(False, alias="createWorkteam")
    worker_domain_prefix: Annotated[str | None, OptionalString, AfterValidator(_check_worker_domain_prefix)] = Field(
        None,
        alias="workerDomainPrefix",
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
        description="Cognito hosted-UI domain prefix of the created workforce (default: derived, unique).",
    )

    @field_validator("labeling")
    @classmethod
    def _labeling_needs_image_buckets(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("image_buckets"):
            # Workers' images must be readable by the proxy, i.e. in fewclick:imageBuckets.
            raise ValueError("fewclick:labeling needs fewclick:imageBuckets (the buckets tasks' images are in)")
        return value

    @field_validator("create_workteam")
    @classmethod
    def _one_workteam_source(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("labeling"):
            raise ValueError("fewclick:createWorkteam needs fewclick:labeling=true")
        if value and info.data.get("workteam_arn"):
            raise ValueError("set fewclick:workteamArn or fewclick:createWorkteam, not both")
        return value

    @field_validator("worker_domain_prefix")
    @classmethod
    def _domain_prefix_needs_a_created_workteam(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not info.data.get("create_workteam"):
            # Only a created workforce gets a hosted-UI domain; otherwise the value would be ignored.
            raise ValueError("fewclick:workerDomainPrefix is used only with fewclick:createWorkteam=true")
        return value

    @field_validator("workteam_arn")
    @classmethod
    def _workteam_needs_labeling(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not info.data.get("labeling"):
            raise ValueError("fewclick:workteamArn is used only with fewclick:labeling=true")
        return value

    @model_validator(mode="after")
    def _max_not_below_min(self) -> FewClickConfig:
        if self.instance_count_max < self.instance_count_min:
            # Raised as a plain ValueError: `load_config` maps it to the instanceCountMax key.
            raise ValueError("instanceCountMax must be >= instanceCountMin")
        return self

    @property
    def latency_alarm_p90_microseconds(self) -> float:
        """SageMaker reports ModelLatency in microseconds; the context key is in milliseconds."""
        return self.latency_alarm_p90_ms * 1000.0

    @classmethod
    def context_keys(cls) -> tuple[str, ...]:
        return tuple(CONTEXT_PREFIX + str(field.alias) for field in cls.model_fields.values())


def _key_of(error: dict[str, Any]) -> str:
    loc = error.get("loc") or ()
    if loc and isinstance(loc[0], str):
        return CONTEXT_PREFIX + loc[0]
    # Model-level checks have no location; the only one concerns the instance counts.
    return CONTEXT_PREFIX + "instanceCountMax"


def config_from_context(values: dict[str, Any]) -> FewClickConfig:
    """Validate `{"fewclick:instanceType": ..., ...}` (other keys are ignored)."""
    raw = {
        key[len(CONTEXT_PREFIX) :]: value
        for key, value in values.items()
        if key.startswith(CONTEXT_PREFIX) and value is not None
    }
    try:
        return FewClickConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = _key_of(dict(error))
            if error.get("type") == "extra_forbidden":
                message = f"unknown key (known keys: {', '.join(FewClickConfig.context_keys())})"
            else:
                message = str(error.get("msg"))
            problems.append(f"{key}: {message} (got {error.get('input')!r})")
        raise ConfigError("invalid FewClick context:\n  " + "\n  ".join(problems)) from None


def load_config(node: ContextReader) -> FewClickConfig:
    """Read every `fewclick:*` key from the app node (cdk.json, `-c`, App(context=...)) and validate."""
    return config_from_context(dict(node.get_all_context()))
