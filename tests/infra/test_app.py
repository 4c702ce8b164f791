"""`app.py`: validates context before building anything, names and places the stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .synth import SynthesizedApp

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bad_context_fails_synth_naming_the_key(tmp_path: Path) -> None:
    """What a deployer sees: `cdk synth -c fewclick:instanceType=ml.t3.medium` exits non-zero."""
    env = {
        **os.environ,
        "CDK_OUTDIR": str(tmp_path),  # as the CDK CLI sets it
        "CDK_CONTEXT_JSON": json.dumps({"fewclick:instanceType": "ml.t3.medium"}),
    }
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert "fewclick:instanceType" in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


def test_build_app_raises_before_creating_stacks() -> None:
    import aws_cdk as cdk

    import app as fewclick_app
    from stacks.config import ConfigError

    app = cdk.App(context={"fewclick:imageBuild": "docker"})
    with pytest.raises(ConfigError, match="fewclick:imageBuild"):
        fewclick_app.build_app(app)
    assert not [child for child in app.node.children if isinstance(child, cdk.Stack)]


def test_stack_names_use_the_prefix(default_app: SynthesizedApp, variant_app: SynthesizedApp) -> None:
    assert sorted(default_app.templates()) == ["FewClick-Api", "FewClick-Model", "FewClick-Monitoring"]
    assert sorted(variant_app.templates()) == ["FewClickAlt-Api", "FewClickAlt-Model", "FewClickAlt-Monitoring"]


def test_stacks_are_environment_agnostic_by_default(default_app: SynthesizedApp) -> None:
    import aws_cdk as cdk

    for stack in default_app.all_stacks:
        assert cdk.Token.is_unresolved(stack.account) and cdk.Token.is_unresolved(stack.region)


def test_account_and_region_from_context_pin_the_environment(tmp_path: Path) -> None:
    import aws_cdk as cdk

    import app as fewclick_app

    app = cdk.App(
        context={"fewclick:account": "123456789012", "fewclick:region": "eu-west-1", "aws:cdk:bundling-stacks": []},
        outdir=str(tmp_path),
    )
    stacks = fewclick_app.build_app(app, nag=False)
    assert {(s.account, s.region) for s in (stacks.model, stacks.api, stacks.monitoring)} == {
        ("123456789012", "eu-west-1")
    }


def test_deploy_order_follows_the_wiring(default_app: SynthesizedApp) -> None:
    stacks = default_app.stacks
    assert stacks.model in stacks.api.dependencies
    assert {stacks.model, stacks.api} <= set(stacks.monitoring.dependencies)
