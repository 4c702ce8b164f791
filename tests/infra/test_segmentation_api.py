"""`SegmentationApi`: routes, Cognito on every method, validation, stage, CORS."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from stacks.constructs.segmentation_api import SegmentationApi

from .synth import TEST_CONTEXT, VARIANT_CONTEXT, SynthesizedApp
from .templates import only, resources


def _paths(template: dict) -> dict[str, str]:
    """{logical id of an AWS::ApiGateway::Resource: its full path}."""
    parts = resources(template, "AWS::ApiGateway::Resource")
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        if logical_id not in paths:
            properties = parts[logical_id]["Properties"]
            parent = properties["ParentId"]
            prefix = path_of(parent["Ref"]) if "Ref" in parent else ""
            paths[logical_id] = f"{prefix}/{properties['PathPart']}"
        return paths[logical_id]

    for logical_id in parts:
        path_of(logical_id)
    return paths


def _routes(template: dict) -> dict[tuple[str, str], dict]:
    paths = _paths(template)
    routes = {}
    for method in resources(template, "AWS::ApiGateway::Method").values():
        properties = method["Properties"]
        resource = properties["ResourceId"]
        path = paths[resource["Ref"]] if "Ref" in resource else "/"
        routes[(properties["HttpMethod"], path)] = properties
    return routes


def test_routes(default_app: SynthesizedApp) -> None:
    routes = _routes(default_app.template_json(default_app.stacks.api))
    non_preflight = sorted(key for key in routes if key[0] != "OPTIONS")
    assert non_preflight == [("GET", "/v1/openapi.json"), ("POST", "/v1/segment")]
    for key in non_preflight:
        assert routes[key]["Integration"]["Type"] == "AWS_PROXY"


def test_every_non_options_method_uses_the_cognito_authorizer(any_app: SynthesizedApp) -> None:
    template = any_app.template_json(any_app.stacks.api)
    (authorizer_id,) = resources(template, "AWS::ApiGateway::Authorizer")
    methods = resources(template, "AWS::ApiGateway::Method")
    assert methods
    for logical_id, method in methods.items():
        properties = method["Properties"]
        if properties["HttpMethod"] == "OPTIONS":
            # Browsers send CORS preflights without credentials; MOCK integration, headers only.
            assert properties["AuthorizationType"] == "NONE"
            assert properties["Integration"]["Type"] == "MOCK"
            continue
        assert properties["AuthorizationType"] == "COGNITO_USER_POOLS", logical_id
        assert properties["AuthorizerId"] == {"Ref": authorizer_id}, logical_id


def test_authorizer_is_a_cognito_user_pool_authorizer(default_app: SynthesizedApp) -> None:
    template = default_app.template(default_app.stacks.api)
    template.has_resource_properties(
        "AWS::ApiGateway::Authorizer",
        {
            "Type": "COGNITO_USER_POOLS",
            "IdentitySource": "method.request.header.Authorization",
            "ProviderARNs": [{"Fn::GetAtt": [Match.string_like_regexp("^UsersPool"), "Arn"]}],
        },
    )


def test_imported_user_pool_is_used_by_the_authorizer(variant_app: SynthesizedApp) -> None:
    template = variant_app.template_json(variant_app.stacks.api)
    assert not resources(template, "AWS::Cognito::UserPool")
    authorizer = only(template, "AWS::ApiGateway::Authorizer")
    assert authorizer["Properties"]["ProviderARNs"] == [VARIANT_CONTEXT["fewclick:userPoolArn"]]


def test_post_validates_the_body(default_app: SynthesizedApp) -> None:
    template = default_app.template_json(default_app.stacks.api)
    (validator_id, validator) = next(iter(resources(template, "AWS::ApiGateway::RequestValidator").items()))
    assert validator["Properties"]["ValidateRequestBody"] is True
    post = _routes(template)[("POST", "/v1/segment")]
    assert post["RequestValidatorId"] == {"Ref": validator_id}
    model_ref = post["RequestModels"]["application/json"]["Ref"]
    schema = template["Resources"][model_ref]["Properties"]["Schema"]
    assert schema["type"] == "object"


def test_stage_throttling_logging_and_tracing(default_app: SynthesizedApp) -> None:
    stage = only(default_app.template_json(default_app.stacks.api), "AWS::ApiGateway::Stage")
    assert "ApiAccessLogs" in json.dumps(stage["Properties"]["AccessLogSetting"]["DestinationArn"])
    template = default_app.template(default_app.stacks.api)
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "StageName": TEST_CONTEXT["fewclick:stageName"],
            "TracingEnabled": True,
            "AccessLogSetting": {
                "DestinationArn": Match.any_value(),
                "Format": Match.string_like_regexp(r"\$context\.requestId"),
            },
            "MethodSettings": [
                Match.object_like(
                    {
                        "HttpMethod": "*",
                        "ResourcePath": "/*",
                        "ThrottlingRateLimit": TEST_CONTEXT["fewclick:throttleRateLimit"],
                        "ThrottlingBurstLimit": TEST_CONTEXT["fewclick:throttleBurstLimit"],
                        "LoggingLevel": "ERROR",
                        "DataTraceEnabled": False,
                        "MetricsEnabled": True,
                    }
                )
            ],
        },
    )


@pytest.mark.parametrize(("fixture", "context"), [("default_app", TEST_CONTEXT), ("variant_app", VARIANT_CONTEXT)])
def test_cors_preflight_allows_only_the_ui_origins(request: pytest.FixtureRequest, fixture: str, context: dict) -> None:
    app: SynthesizedApp = request.getfixturevalue(fixture)
    template = app.template_json(app.stacks.api)
    for path in ("/v1/segment", "/v1/openapi.json"):
        rendered = json.dumps(_routes(template)[("OPTIONS", path)]["Integration"])
        for origin in context["fewclick:uiOrigins"]:
            assert origin in rendered
        assert "'*'" not in rendered


@pytest.mark.parametrize(
    "response_type",
    [
        "DEFAULT_4XX",
        "DEFAULT_5XX",
        "UNAUTHORIZED",
        "ACCESS_DENIED",
        "WAF_FILTERED",
        "THROTTLED",
        "BAD_REQUEST_BODY",
        "REQUEST_TOO_LARGE",
        "MISSING_AUTHENTICATION_TOKEN",
    ],
)
def test_gateway_errors_carry_cors_headers(
    default_app: SynthesizedApp, variant_app: SynthesizedApp, response_type: str
) -> None:
    single = default_app.template(default_app.stacks.api)
    single.has_resource_properties(
        "AWS::ApiGateway::GatewayResponse",
        {
            "ResponseType": response_type,
            "ResponseParameters": Match.object_like(
                {"gatewayresponse.header.Access-Control-Allow-Origin": "'https://label.example.com'"}
            ),
        },
    )
    several = variant_app.template(variant_app.stacks.api)
    several.has_resource_properties(
        "AWS::ApiGateway::GatewayResponse",
        {
            "ResponseType": response_type,
            "ResponseParameters": Match.object_like(
                {"gatewayresponse.header.Access-Control-Allow-Origin": "method.request.header.Origin"}
            ),
        },
    )


def test_construct_alone_and_room_for_another_authorizer() -> None:
    """On a bare stack; `add_method` accepts a Lambda authorizer (added by a later issue)."""
    stack = cdk.Stack(cdk.App(), "Bare")
    handler = lambda_.Function(
        stack,
        "Handler",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
    )
    pool = cognito.UserPool.from_user_pool_id(stack, "Pool", "eu-west-1_AbCdEf123")
    api = SegmentationApi(
        stack,
        "Api",
        handler=handler,
        user_pool=pool,
        ui_origins=["https://label.example.com"],
        stage_name="dev",
        throttle_rate_limit=5,
        throttle_burst_limit=10,
        api_name="bare-api",
    )
    token_authorizer = apigw.TokenAuthorizer(stack, "TokenAuthorizer", handler=handler)
    api.add_method(
        api.api.root.add_resource("admin"), "GET", apigw.LambdaIntegration(handler), authorizer=token_authorizer
    )
    template = Template.from_stack(stack)
    template.has_resource_properties("AWS::ApiGateway::Method", {"HttpMethod": "GET", "AuthorizationType": "CUSTOM"})
    template.has_resource_properties("AWS::ApiGateway::Stage", {"StageName": "dev"})
    template.resource_count_is("AWS::ApiGateway::Authorizer", 2)


def test_gateway_errors_answer_in_the_contracts_error_shape(default_app: SynthesizedApp) -> None:
    """API Gateway's own refusals read like the proxy's: {"error": {"code", "message"}} with a code
    of `ErrorCode`, Retry-After on throttling, and an unknown route is a 404."""
    import re

    from fewclick_contract.api import ErrorCode

    template = default_app.template_json(default_app.stacks.api)
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::GatewayResponse"
    }
    expected = {
        "UNAUTHORIZED": "UNAUTHORIZED",
        "ACCESS_DENIED": "ACCESS_DENIED",
        "WAF_FILTERED": "ACCESS_DENIED",
        "THROTTLED": "THROTTLED",
        "BAD_REQUEST_BODY": "VALIDATION_ERROR",
        "REQUEST_TOO_LARGE": "PAYLOAD_TOO_LARGE",
        "MISSING_AUTHENTICATION_TOKEN": "NOT_FOUND",
        "DEFAULT_4XX": "VALIDATION_ERROR",
        "DEFAULT_5XX": "INTERNAL_ERROR",
    }
    assert set(expected) <= set(responses)
    for response_type, code in expected.items():
        body = responses[response_type]["ResponseTemplates"]["application/json"]
        # What API Gateway renders: the message variable becomes a quoted JSON string.
        rendered = json.loads(body.replace("$context.error.messageString", '"Unauthorized"'))
        assert rendered == {"error": {"code": code, "message": "Unauthorized"}}, response_type
        assert ErrorCode(code)
        assert re.fullmatch(
            r"'[^']*'|method\.request\.header\.Origin",
            responses[response_type]["ResponseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"],
        )
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"
    assert responses["THROTTLED"]["ResponseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"
    assert responses["DEFAULT_4XX"]["ResponseParameters"]["gatewayresponse.header.Access-Control-Expose-Headers"] == (
        "'Retry-After'"
    )
