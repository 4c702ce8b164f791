"""Repository paths the stacks hand to constructs (constructs never guess where they are)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_DOCKERFILE = "model_image/Dockerfile"  # relative to REPO_ROOT, the Docker build context
LAMBDA_PROXY_DIR = "lambda/proxy"  # relative to REPO_ROOT; the Lambda asset root
CONTRACT_DIR = "fewclick_contract"  # relative to REPO_ROOT; copied beside the proxy package
