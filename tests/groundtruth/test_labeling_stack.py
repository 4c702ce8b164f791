"""The labeling stack and the task route it adds to the API stack: snapshot, cdk-nag, cfn-lint, wiring.

The app is synthesized once (module fixture, ~45 s) with fewclick:labeling on and a created workteam,
through the same `tests.infra.synth.synth` the infrastructure tests use (no Docker, no bundling).
Snapshots live in tests/groundtruth/snapshots; `UPDATE_SNAPSHOTS=1 pytest tests/groundtruth` rewrites them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from fewclick.groundtruth import stack_outputs as out
from fewclick_contract.task_token import TASK_SEGMENT_PATH
from stacks.config import ConfigError, config_from_context

SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
LABELING_CONTEXT: dict[str, Any] = {
    "fewclick:labeling": True,
    "fewclick:labelClasses": ["person", "car"],
    "fewclick:taskTokenMaxTtlHours": 72,
    "fewclick:createWorkteam": True,
    "fewclick:workerDomainPrefix": "fewclick-test-workers",
}


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.infra.synth import TEST_CONTEXT, synth

    return synth({**TEST_CONTEXT, **LABELING_CONTEXT}, tmp_path_factory.mktemp("cdk-labeling"))


@pytest.fixture(scope="module")
def templates(synthesized: Any) -> dict[str, dict[str, Any]]:
    stacks = [*synthesized.all_stacks, synthesized.stacks.labeling]
    # Read from the assembly directly: SynthesizedApp's helpers know the three default stacks only.
    return {
        stack.stack_name: json.loads(
            Path(synthesized.assembly.get_stack_artifact(stack.artifact_id).template_full_path).read_text()
        )
        for stack in stacks
    }


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def only(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


# --- snapshot, cdk-nag, cfn-lint ----------------------------------------------------------------


def task_route_part(api_template: dict[str, Any]) -> dict[str, Any]:
    """What labeling adds to the API stack, alone: the rest of it is snapshotted by tests/infra, and
    would make this snapshot fail on every unrelated API change."""
    added = re.compile(r"TaskTokens|v1task|TaskSegmentRequestModel")
    return {"Resources": {k: v for k, v in api_template["Resources"].items() if added.search(k)}}


@pytest.mark.parametrize("name", ["FewClick-Labeling", "FewClick-Api.task-route"])
def test_templates_match_their_snapshots(templates: dict[str, dict[str, Any]], name: str) -> None:
    from tests.infra.snapshot import render

    template = templates[name] if name in templates else task_route_part(templates["FewClick-Api"])
    actual = render(template)
    path = SNAPSHOTS / f"{name}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"no snapshot {path}; create it with UPDATE_SNAPSHOTS=1 pytest tests/groundtruth"
    expected = path.read_text()
    if expected != actual:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), str(path), name))
        pytest.fail(f"{name} differs from its snapshot (UPDATE_SNAPSHOTS=1 accepts it):\n{diff}", pytrace=False)


def test_no_unsuppressed_cdk_nag_findings(synthesized: Any) -> None:
    findings = []
    for stack in [*synthesized.all_stacks, synthesized.stacks.labeling]:
        for message in synthesized.assembly.get_stack_artifact(stack.artifact_id).messages:
            text = str(message.entry.data)
            if message.entry.type in ("aws:cdk:error", "aws:cdk:warning") and "AwsSolutions-" in text[:60]:
                findings.append(f"{message.id}: {text.splitlines()[0]}")
    assert findings == []


def test_suppressions_are_granular_and_reasoned(templates: dict[str, dict[str, Any]]) -> None:
    for name in ("FewClick-Labeling", "FewClick-Api"):
        template = templates[name]
        assert "cdk_nag" not in template.get("Metadata", {}), f"{name}: stack-wide suppression"
        for logical_id, resource in template["Resources"].items():
            for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
                assert len(rule["reason"]) >= 40, f"{name}/{logical_id}: {rule['id']} needs a real reason"
                if rule["id"] in ("AwsSolutions-IAM4", "AwsSolutions-IAM5"):
                    assert rule.get("applies_to"), f"{name}/{logical_id}: {rule['id']} without applies_to"


def test_cfn_lint_is_clean(templates: dict[str, dict[str, Any]]) -> None:
    from cfnlint.api import ManualArgs, lint

    from tests.infra.test_cfn_lint import ACCEPTED

    problems = []
    for name in ("FewClick-Labeling", "FewClick-Api"):
        for match in lint(json.dumps(templates[name]), config=ManualArgs(regions=["us-east-1", "eu-west-1"])):
            accepted = any(match.rule.id == rule and re.search(p, match.message) for rule, p, _ in ACCEPTED)
            if not accepted:
                problems.append(f"{name}: {match.rule.id} {match.message}")
    assert problems == []


# --- what the stack is made of -----------------------------------------------------------------


def test_labeling_bucket_is_private_encrypted_versioned_logged_and_cors_ready(
    templates: dict[str, dict[str, Any]],
) -> None:
    template = templates["FewClick-Labeling"]
    buckets = resources(template, "AWS::S3::Bucket")
    main = next(b for b in buckets.values() if "CorsConfiguration" in b["Properties"])
    props = main["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert "DestinationBucketName" in props["LoggingConfiguration"]
    # Ground Truth's documented CORS rule (sms-cors-update).
    assert props["CorsConfiguration"]["CorsRules"] == [
        {
            "AllowedHeaders": [],
            "AllowedMethods": ["GET"],
            "AllowedOrigins": ["*"],
            "ExposedHeaders": ["Access-Control-Allow-Origin"],
        }
    ]
    assert main["DeletionPolicy"] == "Retain"
    policies = json.dumps(resources(template, "AWS::S3::BucketPolicy"))
    assert '"aws:SecureTransport": "false"' in policies


def test_lambdas_get_exactly_their_settings(templates: dict[str, dict[str, Any]]) -> None:
    template = templates["FewClick-Labeling"]
    functions = {
        f["Properties"]["Handler"]: f["Properties"]
        for f in resources(template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler", "").endswith("lambda_handler")
    }
    pre = functions["pre_annotation.handler.lambda_handler"]["Environment"]["Variables"]
    assert set(pre) >= {"TASK_TOKEN_SECRET_ARN", "IMAGE_BUCKETS", "LABELING_BUCKET", "MAX_TOKEN_TTL_S"}
    assert pre["IMAGE_BUCKETS"] == "fewclick-test-images,fewclick-test-archive"
    assert pre["MAX_TOKEN_TTL_S"] == str(72 * 3600)
    consolidation = functions["consolidation.handler.lambda_handler"]
    assert consolidation["MemorySize"] >= 1024 and consolidation["Timeout"] >= 60
    assert all(f["Runtime"] == "python3.12" for f in functions.values())


def test_ground_truth_role_is_least_privilege(templates: dict[str, dict[str, Any]]) -> None:
    template = templates["FewClick-Labeling"]
    roles = resources(template, "AWS::IAM::Role")
    gt_id, gt_role = next((k, r) for k, r in roles.items() if k.startswith("GroundTruthRole"))
    assert gt_role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    assert "ManagedPolicyArns" not in gt_role["Properties"]
    policy = next(
        p for p in resources(template, "AWS::IAM::Policy").values() if p["Properties"]["Roles"] == [{"Ref": gt_id}]
    )
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    invoke = statements["InvokeFewClickLambdas"]["Resource"]
    assert len(invoke) == 2 and all("Fn::GetAtt" in r for r in invoke)
    assert "output/*" in json.dumps(statements["WriteOutput"]["Resource"])
    # Case-sensitive matching: the labeling-job namespace's own spelling ("AWS/Sagemaker/LabelingJobs") too.
    namespaces = statements["JobMetrics"]["Condition"]["StringLike"]["cloudwatch:namespace"]
    assert {"AWS/SageMaker*", "AWS/Sagemaker*"} <= set(namespaces)


def test_outputs_are_what_the_job_launcher_reads(templates: dict[str, dict[str, Any]]) -> None:
    outputs = templates["FewClick-Labeling"]["Outputs"]
    for key in (*out.REQUIRED, out.WORKTEAM_ARN, out.DEFAULT_LABELS, out.WORKER_PORTAL_URL):
        assert key in outputs, key
    assert outputs[out.DEFAULT_LABELS]["Value"] == "person,car"
    assert outputs[out.MAX_TOKEN_TTL]["Value"] == str(72 * 3600)
    assert out.TEMPLATE_KEY in json.dumps(outputs[out.TEMPLATE_URI]["Value"])


def test_workforce_and_team_are_cognito_backed(templates: dict[str, dict[str, Any]]) -> None:
    template = templates["FewClick-Labeling"]
    team = only(template, "AWS::SageMaker::Workteam")["Properties"]
    member = team["MemberDefinitions"][0]["CognitoMemberDefinition"]
    assert member["CognitoUserGroup"] == "fewclick-workers"
    assert only(template, "AWS::Cognito::UserPoolClient")["Properties"]["GenerateSecret"] is True
    assert only(template, "AWS::Cognito::UserPoolDomain")["Properties"]["Domain"] == "fewclick-test-workers"
    assert "CognitoConfig" in only(template, "AWS::SageMaker::Workforce")["Properties"]


def test_template_is_uploaded_with_the_api_url(synthesized: Any, templates: dict[str, dict[str, Any]]) -> None:
    template = templates["FewClick-Labeling"]
    deployment = only(template, "Custom::CDKBucketDeployment")["Properties"]
    assert deployment["DestinationBucketKeyPrefix"] == "templates/"
    markers = json.dumps(deployment["SourceMarkers"])
    assert "Fn::GetStackOutput" in markers and "FewClick-Api" in markers  # the API URL, resolved at deploy
    # Source.data stages the rendered file as an asset folder named after the object key's hash.
    (key,) = deployment["SourceObjectKeys"]
    folder = Path(synthesized.assembly.directory) / f"asset.{key.removesuffix('.zip')}"
    staged = folder / out.TEMPLATE_KEY.split("/")[-1]
    text = staged.read_text(encoding="utf-8")
    assert "<crowd-form>" in text and "function createLabeler(" in text
    assert "@FEWCLICK_API_URL@" not in text and "<<marker:0xbaba:0>>" in text  # replaced by the URL at deploy


def test_api_gets_a_task_route_behind_the_task_token_authorizer(templates: dict[str, dict[str, Any]]) -> None:
    template = templates["FewClick-Api"]
    authorizers = resources(template, "AWS::ApiGateway::Authorizer")
    authorizer_id, authorizer = next((k, a) for k, a in authorizers.items() if a["Properties"]["Type"] == "REQUEST")
    assert authorizer["Properties"]["IdentitySource"] == "method.request.header.Authorization"
    assert authorizer["Properties"]["AuthorizerResultTtlInSeconds"] == 300
    methods = resources(template, "AWS::ApiGateway::Method")
    api_resources = resources(template, "AWS::ApiGateway::Resource")
    paths = {k: r["Properties"]["PathPart"] for k, r in api_resources.items()}
    task_leaf = TASK_SEGMENT_PATH.rsplit("/", 1)[1]
    (task_id,) = [k for k, part in paths.items() if part == "task"]
    (leaf_id,) = [k for k, r in api_resources.items() if r["Properties"]["ParentId"] == {"Ref": task_id}]
    task_posts = [
        m
        for m in methods.values()
        if m["Properties"]["HttpMethod"] == "POST" and m["Properties"].get("AuthorizationType") == "CUSTOM"
    ]
    assert len(task_posts) == 1
    post = task_posts[0]["Properties"]
    assert post["AuthorizerId"] == {"Ref": authorizer_id}
    assert post["ResourceId"] == {"Ref": leaf_id} and paths[leaf_id] == task_leaf
    assert post["RequestValidatorId"]  # the same body validation as /v1/segment
    # The labelers' route keeps its Cognito authorizer.
    assert sum(m["Properties"].get("AuthorizationType") == "COGNITO_USER_POOLS" for m in methods.values()) == 2
    # Preflight of the task route answers any origin (Ground Truth's worker page is Amazon's origin).
    preflights = [
        m
        for m in methods.values()
        if m["Properties"]["HttpMethod"] == "OPTIONS" and m["Properties"]["ResourceId"].get("Ref") in (task_id, leaf_id)
    ]
    assert len(preflights) == 2
    assert all("'*'" in json.dumps(m["Properties"]["Integration"]) for m in preflights)
    secrets = resources(template, "AWS::SecretsManager::Secret")
    (task_secret_id,) = [k for k in secrets if k.startswith("TaskTokens")]
    secret = secrets[task_secret_id]["Properties"]["GenerateSecretString"]
    assert secret["PasswordLength"] == 64 and secret["ExcludePunctuation"] is True


def test_task_token_and_session_keys_are_separate_secrets(templates: dict[str, dict[str, Any]]) -> None:
    """The proxy reads only its session-token secret; the authorizer only the task-token secret."""
    template = templates["FewClick-Api"]
    secrets = sorted(resources(template, "AWS::SecretsManager::Secret"))
    (session_id,) = [k for k in secrets if k.startswith("ProxySessionSecret")]
    (task_id,) = [k for k in secrets if k.startswith("TaskTokens")]
    functions = resources(template, "AWS::Lambda::Function")
    readers: dict[str, set[str]] = {}
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("secretsmanager:") for a in actions):
                for role in policy["Properties"]["Roles"]:
                    readers.setdefault(role["Ref"], set()).add(statement["Resource"]["Ref"])
    role_of: dict[str, str] = {}  # env variable naming a secret -> the role of the function that has it
    for function in functions.values():
        for var, value in function["Properties"].get("Environment", {}).get("Variables", {}).items():
            if var.endswith("_SECRET_ARN"):
                role_of[var] = function["Properties"]["Role"]["Fn::GetAtt"][0]
                assert value == {"Ref": session_id if var == "SESSION_TOKEN_SECRET_ARN" else task_id}
    assert set(role_of) == {"SESSION_TOKEN_SECRET_ARN", "TASK_TOKEN_SECRET_ARN"}
    assert readers == {role_of["SESSION_TOKEN_SECRET_ARN"]: {session_id}, role_of["TASK_TOKEN_SECRET_ARN"]: {task_id}}


# --- configuration (no synth) -------------------------------------------------------------------


def test_labeling_config_is_typed_and_validated() -> None:
    config = config_from_context(
        {
            "fewclick:imageBuckets": "images-a",
            "fewclick:labeling": "true",
            "fewclick:labelClasses": "person, car",
            "fewclick:taskTokenMaxTtlHours": "48",
        }
    )
    assert config.labeling is True and config.label_classes == ("person", "car")
    assert config.task_token_max_ttl_hours == 48 and config.create_workteam is False
    defaults = config_from_context({})
    assert (defaults.labeling, defaults.label_classes, defaults.workteam_arn) == (False, ("object",), None)


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"fewclick:labeling": True}, "fewclick:labeling"),  # no image buckets: workers could segment nothing
        ({"fewclick:labelClasses": ["car", "Car"]}, "fewclick:labelClasses"),
        ({"fewclick:labelClasses": ["BACKGROUND"]}, "fewclick:labelClasses"),
        ({"fewclick:taskTokenMaxTtlHours": 0}, "fewclick:taskTokenMaxTtlHours"),
        ({"fewclick:taskTokenMaxTtlHours": 31 * 24}, "fewclick:taskTokenMaxTtlHours"),
        ({"fewclick:workteamArn": "arn:aws:iam::123456789012:role/x"}, "fewclick:workteamArn"),
        ({"fewclick:createWorkteam": True}, "fewclick:createWorkteam"),  # without labeling
        (
            {
                "fewclick:imageBuckets": ["b-1"],
                "fewclick:labeling": True,
                "fewclick:createWorkteam": True,
                "fewclick:workteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/t",
            },
            "fewclick:createWorkteam",
        ),
        ({"fewclick:workerDomainPrefix": "Has_Upper"}, "fewclick:workerDomainPrefix"),
        # Cognito refuses its reserved words in a domain prefix: caught at synth, not at deploy.
        (
            {**LABELING_CONTEXT, "fewclick:imageBuckets": ["b-1"], "fewclick:workerDomainPrefix": "my-aws-team"},
            "fewclick:workerDomainPrefix",
        ),
        (
            {**LABELING_CONTEXT, "fewclick:imageBuckets": ["b-1"], "fewclick:workerDomainPrefix": "amazon-x"},
            "fewclick:workerDomainPrefix",
        ),
        # Values that only a labeling deploy (or a created team) would use are not silently ignored.
        ({"fewclick:workerDomainPrefix": "fewclick-workers"}, "fewclick:workerDomainPrefix"),
        (
            {"fewclick:workteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/t"},
            "fewclick:workteamArn",
        ),
    ],
)
def test_bad_labeling_config_names_the_key(context: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        config_from_context(context)


def test_api_gateways_own_refusals_reach_the_worker_page(synthesized: Any) -> None:
    """A worker page's origin is Ground Truth's: with labeling on, API Gateway's 401 (an expired task
    token), 429 and 5XX echo the caller's Origin, or the page would only see a network error."""
    template = synthesized.template_json(synthesized.stacks.api)
    responses = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::ApiGateway::GatewayResponse"
    ]
    assert responses
    for response in responses:
        params = response["ResponseParameters"]
        assert params["gatewayresponse.header.Access-Control-Allow-Origin"] == "method.request.header.Origin"
        assert not any("\\" in key for key in params)  # the override addressed the real key
