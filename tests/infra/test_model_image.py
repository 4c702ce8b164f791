"""`AssetModelImage` (default) and `CodeBuildModelImage` (`fewclick:imageBuild=codebuild`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Match

from stacks.constructs.model_image import PROVIDER_MARGIN, CodeBuildModelImage

from .synth import SynthesizedApp
from .templates import only, resources

ALLOWED_TOP_LEVEL = {"fewclick_contract", "model_image"}


def _assets_manifest(app: SynthesizedApp) -> dict:
    stack = app.stacks.model
    return json.loads((Path(app.assembly.directory) / f"{stack.artifact_id}.assets.json").read_text())


def test_asset_mode_builds_the_dockerfile_from_the_repo_root(default_app: SynthesizedApp) -> None:
    docker_images = _assets_manifest(default_app)["dockerImages"]
    assert len(docker_images) == 1
    source = next(iter(docker_images.values()))["source"]
    assert source["dockerFile"] == "model_image/Dockerfile"
    assert source["platform"] == "linux/amd64"
    # The build context holds the two folders the Dockerfile copies, nothing else.
    context = Path(default_app.assembly.directory) / source["directory"]
    assert {path.name for path in context.iterdir()} == ALLOWED_TOP_LEVEL
    assert not [p for p in context.rglob("*") if p.name in {"__pycache__", ".git", "node_modules", "cdk.out"}]


def test_asset_mode_model_uses_the_asset_image(default_app: SynthesizedApp) -> None:
    model = only(default_app.template_json(default_app.stacks.model), "AWS::SageMaker::Model")
    image = model["Properties"]["PrimaryContainer"]["Image"]
    assert "container-assets" in json.dumps(image)
    assert not resources(default_app.template_json(default_app.stacks.model), "AWS::CodeBuild::Project")


def test_codebuild_mode_switches_to_codebuild(variant_app: SynthesizedApp) -> None:
    assert not _assets_manifest(variant_app).get("dockerImages")
    template = variant_app.template(variant_app.stacks.model)
    template.resource_count_is("AWS::CodeBuild::Project", 1)
    template.has_resource_properties(
        "AWS::CodeBuild::Project",
        {
            "Source": Match.object_like({"Type": "S3"}),
            "Environment": Match.object_like({"PrivilegedMode": True, "Type": "LINUX_CONTAINER"}),
            "EncryptionKey": Match.any_value(),
        },
    )
    template.has_resource_properties(
        "AWS::ECR::Repository",
        {
            "ImageScanningConfiguration": {"ScanOnPush": True},
            "ImageTagMutability": "IMMUTABLE",
            "LifecyclePolicy": Match.object_like(
                {"LifecyclePolicyText": Match.string_like_regexp("imageCountMoreThan")}
            ),
        },
    )
    # The build runs during the deployment, before SageMaker validates the image.
    builds = resources(variant_app.template_json(variant_app.stacks.model), "Custom::FewClickImageBuild")
    assert len(builds) == 1
    build_id, build = next(iter(builds.items()))
    assert build["Properties"]["ImageTag"]
    model = only(variant_app.template_json(variant_app.stacks.model), "AWS::SageMaker::Model")
    assert build_id in model["DependsOn"]


def test_codebuild_mode_model_pulls_from_its_own_repository(variant_app: SynthesizedApp) -> None:
    template = variant_app.template_json(variant_app.stacks.model)
    (repository_id,) = resources(template, "AWS::ECR::Repository")
    model = only(template, "AWS::SageMaker::Model")
    assert repository_id in json.dumps(model["Properties"]["PrimaryContainer"]["Image"])
    role_policy = next(
        policy
        for logical_id, policy in resources(template, "AWS::IAM::Policy").items()
        if logical_id.startswith("EndpointExecutionRole")
    )
    ecr_statement = next(
        s for s in role_policy["Properties"]["PolicyDocument"]["Statement"] if "ecr:BatchGetImage" in s["Action"]
    )
    assert ecr_statement["Resource"] == {"Fn::GetAtt": [repository_id, "Arn"]}


def test_codebuild_source_is_the_zipped_build_context(variant_app: SynthesizedApp) -> None:
    files = _assets_manifest(variant_app)["files"]
    zipped = [
        f for f in files.values() if f["source"].get("packaging") == "zip" and "Dockerfile" in _listing(variant_app, f)
    ]
    assert len(zipped) == 1


def _listing(app: SynthesizedApp, asset: dict) -> str:
    path = Path(app.assembly.directory) / asset["source"]["path"]
    return " ".join(p.name for p in path.rglob("*")) if path.is_dir() else ""


def test_cdk_build_context_matches_the_dockerfiles_ignore_file() -> None:
    """`docker build` outside the CDK (BuildKit reads model_image/Dockerfile.dockerignore) and
    the CDK asset must send the same build context."""
    from stacks.constructs.model_image import IMAGE_CONTEXT_EXCLUDES

    ignore_file = Path(__file__).resolve().parents[2] / "model_image" / "Dockerfile.dockerignore"
    if not ignore_file.exists():
        return
    patterns = [line.strip() for line in ignore_file.read_text().splitlines()]
    assert [p for p in patterns if p and not p.startswith("#")] == list(IMAGE_CONTEXT_EXCLUDES)


def test_codebuild_mode_build_ends_inside_cloudformations_wait(variant_app: SynthesizedApp) -> None:
    """CloudFormation waits at most an hour for a custom resource: the build (and the provider's
    polling after it) must end inside that, so a slow build fails as itself, with its log."""
    template = variant_app.template_json(variant_app.stacks.model)
    project = only(template, "AWS::CodeBuild::Project")
    build = next(iter(resources(template, "Custom::FewClickImageBuild").values()))
    assert int(build["Properties"]["ServiceTimeout"]) == 3600
    assert project["Properties"]["TimeoutInMinutes"] + PROVIDER_MARGIN.to_minutes() <= 60


def test_a_build_timeout_past_cloudformations_wait_is_refused_at_synth() -> None:
    from aws_cdk import App, Duration, Stack

    stack = Stack(App(), "Probe")
    with pytest.raises(ValueError, match="must fit CloudFormation's 60 min wait"):
        CodeBuildModelImage(
            stack,
            "Image",
            context_dir=Path(__file__).resolve().parents[2],
            dockerfile="model_image/Dockerfile",
            build_timeout=Duration.minutes(55),
        )
