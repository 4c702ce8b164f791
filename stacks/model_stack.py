"""Model stack: the model image (ECR) and the SageMaker GPU endpoint that serves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from stacks.constructs.model_endpoint import ModelEndpoint
from stacks.constructs.model_image import AssetModelImage, CodeBuildModelImage, ModelImage


class ModelStack(Stack):
    """Exposes `endpoint_name`, `endpoint_arn` and `variant_name` for the other stacks."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        context_dir: Path,
        dockerfile: str,
        image_build: Literal["asset", "codebuild"],
        instance_type: str,
        instance_count_min: int,
        instance_count_max: int,
        target_invocations_per_instance: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        image: ModelImage
        if image_build == "codebuild":
            codebuild_image = CodeBuildModelImage(self, "Image", context_dir=context_dir, dockerfile=dockerfile)
            image = codebuild_image
        else:
            image = AssetModelImage(self, "Image", context_dir=context_dir, dockerfile=dockerfile)

        self.endpoint = ModelEndpoint(
            self,
            "Endpoint",
            image_uri=image.image_uri,
            image_repository=image.repository,
            instance_type=instance_type,
            instance_count_min=instance_count_min,
            instance_count_max=instance_count_max,
            target_invocations_per_instance=target_invocations_per_instance,
        )
        if image_build == "codebuild":
            # SageMaker validates the image when the model is created: build it first.
            self.endpoint.model.node.add_dependency(codebuild_image.build_run)
        self.image = image

        self.endpoint_name: str = self.endpoint.endpoint_name
        self.endpoint_arn: str = self.endpoint.endpoint_arn
        self.variant_name: str = self.endpoint.variant_name

        CfnOutput(self, "EndpointName", value=self.endpoint_name, description="SageMaker endpoint name")
        CfnOutput(self, "ImageUri", value=image.image_uri, description="Model server image")
