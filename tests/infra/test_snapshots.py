"""Every synthesized template (default and variant app) matches its committed snapshot."""

from __future__ import annotations

import pytest

from .snapshot import MASK, check_snapshot, mask
from .synth import SynthesizedApp


def test_every_template_matches_its_snapshot(any_app: SynthesizedApp) -> None:
    failures = [
        message
        for name, template in sorted(any_app.templates().items())
        if (message := check_snapshot(name, template)) is not None
    ]
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


def test_masking_hides_asset_hashes_but_nothing_else() -> None:
    digest = "0123456789abcdef" * 4
    template = {
        "Code": {"S3Key": f"{digest}.zip"},
        "Image": {"Fn::Sub": f"${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.amazonaws.com/repo:{digest}"},
        "InstanceType": "ml.g4dn.xlarge",
    }
    masked = mask(template)
    assert masked["Code"]["S3Key"] == f"{MASK}.zip"
    assert masked["Image"]["Fn::Sub"].endswith(f":{MASK}")
    assert masked["InstanceType"] == "ml.g4dn.xlarge"
