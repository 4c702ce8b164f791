"""The properties docs/SECURITY_REVIEW.md claims, asserted on the synthesized templates (and, for logs,
on the proxy itself). Every stack of the app is covered, the Ground Truth labeling stack included
(synthesized here with ``fewclick:labeling=true``).

A new ``*`` resource or a new managed policy fails here until it is added to an allow-list below with
its reason, which is then also the review's written justification.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .synth import TEST_CONTEXT, SynthesizedApp

REPO_ROOT = Path(__file__).resolve().parents[2]
PROXY_DIR = REPO_ROOT / "lambda" / "proxy" / "fewclick_proxy"

# Actions allowed on Resource "*", each with the reason the review gives. An action is listed only when
# AWS offers no resource-level permission for it (see the Service Authorization Reference).
STAR_RESOURCE_ACTIONS: dict[str, str] = {
    "ecr:GetAuthorizationToken": "returns a registry-wide login token; no resource-level permission exists",
    "cloudwatch:PutMetricData": "no resource-level permission; scoped by a cloudwatch:namespace condition",
    "xray:PutTraceSegments": "X-Ray tracing (Lambda active tracing); no resource-level permission exists",
    "xray:PutTelemetryRecords": "X-Ray tracing (Lambda active tracing); no resource-level permission exists",
}
# Where a "*" action on PutMetricData is tolerated only with a namespace condition.
CONDITION_REQUIRED = {"cloudwatch:PutMetricData": "cloudwatch:namespace"}
# AWS managed policies allowed on a role, with the reason.
MANAGED_POLICIES: dict[str, str] = {
    "AmazonAPIGatewayPushToCloudWatchLogs": "API Gateway's account-level logging role (execution + access logs)",
    "AWSLambdaBasicExecutionRole": "the CDK BucketDeployment custom resource's own log writes",
}
# GPU types with local NVMe instance storage: SageMaker rejects a KmsKeyId for those (the volumes are
# hardware-encrypted at rest), so their endpoint configs rightly carry none.
NVME_INSTANCE_PREFIXES = ("ml.g4dn.", "ml.g5.", "ml.g6.", "ml.g6e.", "ml.p3dn.", "ml.p4d.", "ml.p5.", "ml.inf2.")


@pytest.fixture(scope="module")
def labeling_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    from .synth import synth

    return synth({**TEST_CONTEXT, "fewclick:labeling": True}, tmp_path_factory.mktemp("cdk-security"))


def all_templates(app: SynthesizedApp) -> dict[str, dict[str, Any]]:
    templates = dict(app.templates())
    labeling = getattr(app.stacks, "labeling", None)
    if labeling is not None:
        artifact = app.assembly.get_stack_artifact(labeling.artifact_id)
        templates[labeling.stack_name] = json.loads(Path(artifact.template_full_path).read_text())
    return templates


@pytest.fixture(scope="module", params=["default", "labeling"])
def templates(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    name = "default_app" if request.param == "default" else "labeling_app"
    return all_templates(request.getfixturevalue(name))


def resources(templates: dict[str, dict[str, Any]], resource_type: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for stack, template in templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            if resource["Type"] == resource_type:
                yield stack, logical_id, resource.get("Properties", {})


def identity_statements(templates: dict[str, dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any], Any]]:
    """(stack, logical id, statement, roles) of every identity policy: IAM policies, managed, inline."""
    for stack, logical_id, props in resources(templates, "AWS::IAM::Policy"):
        for statement in props["PolicyDocument"]["Statement"]:
            yield stack, logical_id, statement, props.get("Roles")
    for stack, logical_id, props in resources(templates, "AWS::IAM::ManagedPolicy"):
        for statement in props["PolicyDocument"]["Statement"]:
            yield stack, logical_id, statement, props.get("Roles")
    for stack, logical_id, props in resources(templates, "AWS::IAM::Role"):
        for policy in props.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield stack, logical_id, statement, [{"Ref": logical_id}]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- least privilege ---


def test_no_wildcard_actions(templates: dict[str, dict[str, Any]]) -> None:
    for stack, logical_id, statement, _ in identity_statements(templates):
        for action in as_list(statement.get("Action", [])):
            assert action != "*" and not action.endswith(":*"), f"{stack}/{logical_id}: wildcard action {action}"
        assert "NotAction" not in statement, f"{stack}/{logical_id}: NotAction grants everything else"


def test_star_resources_only_where_aws_has_no_resource_level_permission(
    templates: dict[str, dict[str, Any]],
) -> None:
    for stack, logical_id, statement, _ in identity_statements(templates):
        if statement["Effect"] != "Allow" or "*" not in as_list(statement.get("Resource", [])):
            continue
        for action in as_list(statement["Action"]):
            assert action in STAR_RESOURCE_ACTIONS, (
                f"{stack}/{logical_id}: {action} on Resource '*' has no reason in STAR_RESOURCE_ACTIONS"
            )
            key = CONDITION_REQUIRED.get(action)
            if key is not None:
                conditions = json.dumps(statement.get("Condition", {}))
                assert key in conditions, f"{stack}/{logical_id}: {action} on '*' without a {key} condition"


def test_managed_policies_are_the_reviewed_ones(templates: dict[str, dict[str, Any]]) -> None:
    for stack, logical_id, props in resources(templates, "AWS::IAM::Role"):
        for arn in props.get("ManagedPolicyArns", []):
            text = json.dumps(arn)
            assert any(name in text for name in MANAGED_POLICIES), f"{stack}/{logical_id}: managed policy {text}"


# --- the model is reachable only through the proxy ---


def test_only_the_proxy_role_may_invoke_the_endpoint(templates: dict[str, dict[str, Any]]) -> None:
    grants = [
        (stack, logical_id, statement, roles)
        for stack, logical_id, statement, roles in identity_statements(templates)
        if any(str(a).lower().startswith("sagemaker:invokeendpoint") for a in as_list(statement["Action"]))
    ]
    assert len(grants) == 1, f"InvokeEndpoint granted {len(grants)} times: {grants}"
    stack, logical_id, statement, roles = grants[0]
    assert stack.endswith("-Api") and logical_id.startswith("ProxyRole"), (stack, logical_id)
    assert roles == [
        {
            "Ref": next(
                r
                for r in templates[stack]["Resources"]
                if r.startswith("ProxyRole") and templates[stack]["Resources"][r]["Type"] == "AWS::IAM::Role"
            )
        }
    ]
    assert statement["Resource"] != "*" and "*" not in json.dumps(statement["Resource"])


def test_no_public_invocation_paths(templates: dict[str, dict[str, Any]]) -> None:
    # No function URLs; Lambda invoke permissions only for API Gateway, only from this account's APIs.
    assert not list(resources(templates, "AWS::Lambda::Url"))
    for stack, logical_id, props in resources(templates, "AWS::Lambda::Permission"):
        assert props["Principal"] == "apigateway.amazonaws.com", f"{stack}/{logical_id}: {props['Principal']}"
        assert "SourceArn" in props, f"{stack}/{logical_id}: invoke permission without SourceArn"
    # No API method talks to SageMaker directly (that would bypass the proxy's checks).
    for stack, logical_id, props in resources(templates, "AWS::ApiGateway::Method"):
        uri = json.dumps(props.get("Integration", {}).get("Uri", ""))
        assert "runtime.sagemaker" not in uri and ":sagemaker:" not in uri, f"{stack}/{logical_id}"


def test_every_api_method_is_authenticated(templates: dict[str, dict[str, Any]]) -> None:
    methods = list(resources(templates, "AWS::ApiGateway::Method"))
    assert methods
    for stack, logical_id, props in methods:
        if props["HttpMethod"] == "OPTIONS":
            # CORS preflights: browsers send them without credentials; they return headers only.
            assert props["Integration"]["Type"] == "MOCK", f"{stack}/{logical_id}"
            continue
        assert props.get("AuthorizationType") in ("COGNITO_USER_POOLS", "CUSTOM"), f"{stack}/{logical_id}"
        assert props.get("AuthorizerId"), f"{stack}/{logical_id}: no authorizer"


def test_model_container_has_no_network(templates: dict[str, dict[str, Any]]) -> None:
    models = list(resources(templates, "AWS::SageMaker::Model"))
    assert models
    for stack, logical_id, props in models:
        assert props.get("EnableNetworkIsolation") is True, f"{stack}/{logical_id}"


# --- throttling ---


def test_api_is_throttled_at_the_stage_and_per_ip(templates: dict[str, dict[str, Any]]) -> None:
    stages = list(resources(templates, "AWS::ApiGateway::Stage"))
    assert stages
    for stack, logical_id, props in stages:
        settings = [s for s in props.get("MethodSettings", []) if s.get("HttpMethod") == "*"]
        assert settings, f"{stack}/{logical_id}: no stage-wide method settings"
        assert settings[0]["ThrottlingRateLimit"] > 0 and settings[0]["ThrottlingBurstLimit"] > 0
    acls = list(resources(templates, "AWS::WAFv2::WebACL"))
    assert acls and any("RateBasedStatement" in rule["Statement"] for _, _, acl in acls for rule in acl["Rules"])
    assert list(resources(templates, "AWS::WAFv2::WebACLAssociation"))


# --- encryption at rest and in transit, no public data ---


def test_buckets_are_encrypted_private_and_tls_only(templates: dict[str, dict[str, Any]]) -> None:
    buckets = {(stack, logical_id): props for stack, logical_id, props in resources(templates, "AWS::S3::Bucket")}
    policies = {
        (stack, json.dumps(props["Bucket"])): props["PolicyDocument"]
        for stack, _, props in resources(templates, "AWS::S3::BucketPolicy")
    }
    for (stack, logical_id), props in buckets.items():
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms", "aws:kms:dsse")
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, f"{stack}/{logical_id}"
        assert "AccessControl" not in props, f"{stack}/{logical_id}: canned ACL"
        ownership = props.get("OwnershipControls", {}).get("Rules", [])
        assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}], f"{stack}/{logical_id}: ACLs still apply"
        document = policies.get((stack, json.dumps({"Ref": logical_id})))
        assert document is not None, f"{stack}/{logical_id}: no bucket policy (no TLS-only rule)"
        assert any(
            s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in document["Statement"]
        ), f"{stack}/{logical_id}: plain-HTTP access is not denied"
        for statement in document["Statement"]:
            if statement["Effect"] == "Allow":
                assert statement["Principal"] not in ("*", {"AWS": "*"}), f"{stack}/{logical_id}: public grant"


def test_topics_are_encrypted_and_tls_only(templates: dict[str, dict[str, Any]]) -> None:
    topics = list(resources(templates, "AWS::SNS::Topic"))
    assert topics
    for stack, logical_id, props in topics:
        assert props.get("KmsMasterKeyId"), f"{stack}/{logical_id}: unencrypted topic"
    topic_policies = [props for _, _, props in resources(templates, "AWS::SNS::TopicPolicy")]
    for stack, logical_id, _ in topics:
        assert any(
            {"Ref": logical_id} in policy["Topics"]
            and any(
                s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
                for s in policy["PolicyDocument"]["Statement"]
            )
            for policy in topic_policies
        ), f"{stack}/{logical_id}: publishing over plain HTTP is not denied"
    for _, _, key in resources(templates, "AWS::KMS::Key"):
        assert key.get("EnableKeyRotation") is True


def test_endpoint_storage_encryption(templates: dict[str, dict[str, Any]]) -> None:
    configs = list(resources(templates, "AWS::SageMaker::EndpointConfig"))
    assert configs
    for stack, logical_id, props in configs:
        if props.get("KmsKeyId"):
            continue  # a customer key is configured: fine for any instance type that accepts one
        for variant in props["ProductionVariants"]:
            assert str(variant["InstanceType"]).startswith(NVME_INSTANCE_PREFIXES), (
                f"{stack}/{logical_id}: {variant['InstanceType']} has EBS storage; configure KmsKeyId"
            )


def test_log_groups_expire_and_custom_domains_use_tls12(templates: dict[str, dict[str, Any]]) -> None:
    # CloudWatch Logs encrypts every log group at rest (service keys); what we own is how long they live.
    for stack, logical_id, props in resources(templates, "AWS::Logs::LogGroup"):
        assert props.get("RetentionInDays"), f"{stack}/{logical_id}: logs kept forever"
    for stack, logical_id, props in resources(templates, "AWS::ApiGateway::DomainName"):
        assert props.get("SecurityPolicy") == "TLS_1_2", f"{stack}/{logical_id}"


def test_secrets_are_generated_not_written_in_the_template(templates: dict[str, dict[str, Any]]) -> None:
    for stack, logical_id, props in resources(templates, "AWS::SecretsManager::Secret"):
        assert "SecretString" not in props and "GenerateSecretString" in props, f"{stack}/{logical_id}"


# --- logs carry no image data and no tokens ---


def test_gateway_logs_no_bodies_or_headers(templates: dict[str, dict[str, Any]]) -> None:
    for stack, logical_id, props in resources(templates, "AWS::ApiGateway::Stage"):
        for setting in props.get("MethodSettings", []):
            # Data tracing would write full requests (images, Authorization headers) to CloudWatch.
            assert setting.get("DataTraceEnabled") in (False, None), f"{stack}/{logical_id}"
        log_format = props.get("AccessLogSetting", {}).get("Format", "")
        for leak in ("$input", "Authorization", "$context.authorizer.claims.token", "$request.header"):
            assert leak.lower() not in log_format.lower(), f"{stack}/{logical_id}: access log has {leak}"


def test_functions_do_not_log_events(templates: dict[str, dict[str, Any]]) -> None:
    for stack, logical_id, props in resources(templates, "AWS::Lambda::Function"):
        variables = props.get("Environment", {}).get("Variables", {})
        assert str(variables.get("POWERTOOLS_LOGGER_LOG_EVENT", "false")).lower() != "true", f"{stack}/{logical_id}"
        for name in ("LOG_LEVEL", "POWERTOOLS_LOG_LEVEL"):
            assert str(variables.get(name, "INFO")).upper() != "DEBUG", f"{stack}/{logical_id}: {name}=DEBUG"


SENSITIVE_NAMES = {"body", "raw_body", "decoded_body", "event", "raw_event", "headers", "image", "payload", "req"}


def test_proxy_logger_calls_name_no_request_data() -> None:
    """Static check of every Logger call in the proxy: no argument reads the body, the event or headers."""
    calls = 0
    for path in sorted(PROXY_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("logger", "log", "LOG")
            ):
                continue
            calls += 1
            for sub in ast.walk(node):
                name = sub.id if isinstance(sub, ast.Name) else sub.attr if isinstance(sub, ast.Attribute) else None
                assert name not in SENSITIVE_NAMES, f"{path.name}:{node.lineno}: a log call reads {name!r}"
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "log_event":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, f"{path.name}: log_event"
    assert calls >= 2


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
def test_proxy_logs_neither_the_image_nor_the_token() -> None:
    """The real handler at DEBUG, a base64 image and a bearer token in, success and error paths: the
    captured log output holds neither, nor the session id handed back."""
    import sys

    if str(REPO_ROOT / "lambda" / "proxy") not in sys.path:
        sys.path.insert(0, str(REPO_ROOT / "lambda" / "proxy"))
    import cv2
    import numpy as np
    from fewclick_proxy import handler
    from fewclick_proxy.config import ProxyConfig
    from fewclick_proxy.endpoint_client import EndpointResult
    from fewclick_proxy.image_source import ImageSource
    from fewclick_proxy.segment import Segmenter

    from fewclick.local.gateway import LambdaContext, build_proxy_event
    from fewclick_contract.wire import WireRequest, WireResponse, encode_probabilities

    class Endpoint:
        def invoke(self, request: WireRequest, session_id: str | None, deadline: float | None = None) -> EndpointResult:
            prob = np.zeros((request.size, request.size), np.float32)
            prob[64:192, 64:192] = 0.9
            response = WireResponse(
                sessionId="0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                cropId=request.cropId,
                size=request.size,
                probabilities=encode_probabilities(prob),
                modelVersion="test",
                modelMs=1.0,
                cache="miss",
            )
            return EndpointResult(response, response.sessionId, 100, 100)

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    image_b64 = base64.b64encode(cv2.imencode(".png", rgb)[1].tobytes()).decode()
    token = "eyJraWQiOiJsZWFrIn0.eyJzdWIiOiJsYWJlbGVyIn0.c2lnbmF0dXJlLW11c3Qtbm90LWxlYWs"
    config = ProxyConfig(endpoint_name="e", session_secret=b"k" * 32)
    found = handler._segmenter  # a module-level singleton other tests rely on: put it back afterwards
    handler.configure(Segmenter(config, ImageSource(config), Endpoint()))

    captured: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(handler.logger.registered_formatter.format(record))

    capture = Capture(level=logging.DEBUG)
    std_logger = logging.getLogger(handler.logger.name)
    std_logger.addHandler(capture)
    previous = handler.logger.log_level
    handler.logger.setLevel("DEBUG")
    try:
        points = [{"x": 40, "y": 60}, {"x": 120, "y": 60}, {"x": 80, "y": 30}, {"x": 80, "y": 90}]
        bodies = [
            {"image": {"base64": image_b64}, "extremePoints": points},  # 200
            {"image": {"base64": image_b64}, "extremePoints": [{"x": 999, "y": 0}, *points[1:]]},  # 400
            {"image": {"base64": image_b64[:-40]}, "extremePoints": points},  # 400 undecodable
        ]
        session_ids = []
        for body in bodies:
            event = build_proxy_event(
                method="POST",
                path="/v1/segment",
                resource="/v1/segment",
                headers=[("Authorization", f"Bearer {token}"), ("Content-Type", "application/json")],
                query={},
                body=json.dumps(body).encode(),
                source_ip="203.0.113.9",
                stage="prod",
                request_id="req-1",
                authorizer={"claims": {"sub": "labeler"}},
            )
            out = handler.lambda_handler(event, LambdaContext("req-1", 10**9))
            if out["statusCode"] == 200:
                session_ids.append(json.loads(out["body"])["sessionId"])
    finally:
        std_logger.removeHandler(capture)
        handler.logger.setLevel(previous)
        handler._segmenter = found
    assert session_ids, "the success path did not run"
    text = "\n".join(captured)
    assert len(captured) >= 3, captured  # the success line and the refusals were logged
    for secret in (image_b64[:64], image_b64[-64:-40], token, token.split(".")[2], *session_ids):
        assert secret not in text, f"the proxy logged {secret[:20]}..."
