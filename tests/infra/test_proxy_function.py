"""`ProxyFunction` and its wiring in the API stack (least-privilege IAM)."""

from __future__ import annotations

from aws_cdk.assertions import Match

from stacks.constructs.proxy_function import HANDLER

from .synth import TEST_CONTEXT, SynthesizedApp
from .templates import as_list, only, policy_statements, resolve_cross_stack, resources, statements_with_action


def test_function_settings(default_app: SynthesizedApp) -> None:
    template = default_app.template(default_app.stacks.api)
    template.resource_count_is("AWS::Lambda::Function", 1)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.12",
            "Handler": HANDLER,
            "Timeout": 29,
            "MemorySize": 1024,
            "TracingConfig": {"Mode": "Active"},
            "Architectures": ["x86_64"],
            "LoggingConfig": {"LogGroup": {"Ref": Match.string_like_regexp("^ProxyLogs")}},
        },
    )
    template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30, "LogGroupName": Match.absent()})


def test_environment(default_app: SynthesizedApp) -> None:
    function = only(default_app.template_json(default_app.stacks.api), "AWS::Lambda::Function")
    variables = function["Properties"]["Environment"]["Variables"]
    assert {key: value for key, value in variables.items() if key != "ENDPOINT_NAME"} == {
        "ALLOWED_BUCKETS": ",".join(TEST_CONTEXT["fewclick:imageBuckets"]),
        "ALLOWED_ORIGINS": ",".join(TEST_CONTEXT["fewclick:uiOrigins"]),
        "POWERTOOLS_SERVICE_NAME": "fewclick-proxy",
        "POWERTOOLS_METRICS_NAMESPACE": "FewClick",
        "LOG_LEVEL": "INFO",
        "MODEL_INSTANCE_TYPE": "ml.g4dn.xlarge",
    }


def test_endpoint_name_env_is_the_model_stacks_endpoint(default_app: SynthesizedApp) -> None:
    function = only(default_app.template_json(default_app.stacks.api), "AWS::Lambda::Function")
    value = resolve_cross_stack(default_app, function["Properties"]["Environment"]["Variables"]["ENDPOINT_NAME"])
    assert value == {"Fn::GetAtt": [_endpoint_logical_id(default_app), "EndpointName"]}


def _endpoint_logical_id(app: SynthesizedApp) -> str:
    template = app.template_json(app.stacks.model)
    (logical_id,) = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::SageMaker::Endpoint"]
    return logical_id


def test_invoke_endpoint_only_on_the_endpoint_arn(any_app: SynthesizedApp) -> None:
    api = any_app.template_json(any_app.stacks.api)
    statements = statements_with_action(api, "sagemaker:InvokeEndpoint")
    assert len(statements) == 1
    (statement,) = statements
    assert as_list(statement["Action"]) == ["sagemaker:InvokeEndpoint"]
    resource = statement["Resource"]
    assert not isinstance(resource, list), "exactly one resource"
    assert resolve_cross_stack(any_app, resource) == {"Fn::GetAtt": [_endpoint_logical_id(any_app), "EndpointArn"]}


def test_get_object_only_on_configured_buckets(any_app: SynthesizedApp) -> None:
    api = any_app.template_json(any_app.stacks.api)
    statements = statements_with_action(api, "s3:GetObject")
    assert len(statements) == 1
    (statement,) = statements
    assert as_list(statement["Action"]) == ["s3:GetObject"]
    expected = [
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":s3:::{name}/*"]]}
        for name in TEST_CONTEXT["fewclick:imageBuckets"]
    ]
    assert sorted(map(str, as_list(statement["Resource"]))) == sorted(map(str, expected))


def test_no_other_sagemaker_or_s3_permissions(any_app: SynthesizedApp) -> None:
    api = any_app.template_json(any_app.stacks.api)
    for statement in policy_statements(api):
        for action in as_list(statement["Action"]):
            assert action == "*" or not action.endswith(":*"), f"wildcard action {action}"
            if action.startswith(("sagemaker:", "s3:")):
                assert action in {"sagemaker:InvokeEndpoint", "s3:GetObject"}, action


def test_role_has_no_managed_policies(default_app: SynthesizedApp) -> None:
    """Not the default role with AWSLambdaBasicExecutionRole: logs go to its own group only."""
    roles = [
        role
        for role in resources(default_app.template_json(default_app.stacks.api), "AWS::IAM::Role").values()
        if "lambda.amazonaws.com" in str(role["Properties"]["AssumeRolePolicyDocument"])
    ]
    assert len(roles) == 1
    assert "ManagedPolicyArns" not in roles[0]["Properties"]
