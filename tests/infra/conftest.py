"""Session fixtures: each app variant is synthesized once per test session.

`synth` (which starts jsii/Node) is imported inside the fixtures so tests that need no
CDK app (config, hadolint, bundling helpers) stay fast when run alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .synth import SynthesizedApp


@pytest.fixture(scope="session")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """The app as deployed with the defaults (asset image, created user pool)."""
    from .synth import TEST_CONTEXT, synth

    return synth(TEST_CONTEXT, tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def variant_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """CodeBuild image, imported user pool, several origins, alarm e-mail, other prefix."""
    from .synth import VARIANT_CONTEXT, synth

    return synth(VARIANT_CONTEXT, tmp_path_factory.mktemp("cdk-variant"))


@pytest.fixture(scope="session", params=["default", "variant"])
def any_app(request: pytest.FixtureRequest) -> SynthesizedApp:
    app: SynthesizedApp = request.getfixturevalue(f"{request.param}_app")
    return app
