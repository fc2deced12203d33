"""The Pulumi program evaluated offline under ``pulumi.runtime.set_mocks``.

Each variant is evaluated once per session by ``infra_pulumi.offline.evaluate``
(which records every resource's type token, logical name and inputs, and fakes
the computed outputs: ARNs, ``arnSuffix``, the managed master secret, the DMS
task ARN ``...:task:ABCDEFGHIJKLMNOP``). Every evaluation runs in a fresh
context on its own event loop, so variants never see each other's state.

Variants:
- ``test_env``: a non-production stack with a source database, no certificate.
- ``prod_env``: production with a certificate, an alarm e-mail, a source whose
  secret has its own CMK, explicit AZs and the DMS service roles.
- ``no_source_env``: no source database; ``natGateways=per-az`` overrides the default.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from infra_support import (
    CERTIFICATE_ARN,
    IMAGE,
    SOURCE_HOST,
    SOURCE_KMS_KEY_ARN,
    SOURCE_SECRET_ARN,
    Evaluate,
)

from infra_pulumi.offline import Evaluation, evaluate
from infra_pulumi.program import pulumi_program


@pytest.fixture(scope="session")
def lambda_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the built package (the real build is tested in tests/unit)."""
    path = tmp_path_factory.mktemp("lambda") / "validation-lambda.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return path


@pytest.fixture(scope="session")
def base_config(lambda_zip: Path) -> dict[str, str]:
    return {
        "aws:region": "us-east-1",
        "migctl:containerImage": IMAGE,
        "migctl:lambdaPackage": str(lambda_zip),
        "migctl:sourceDbHost": SOURCE_HOST,
        "migctl:sourceSecretArn": SOURCE_SECRET_ARN,
    }


@pytest.fixture(scope="session")
def run_program(base_config: dict[str, str]) -> Evaluate:
    """Evaluate the program: ``run_program(stack, drop=(...), preview=False, **overrides)``.

    Overrides are config keys of the ``migctl`` namespace, in camelCase.
    """

    def run(
        stack: str = "test",
        *,
        drop: tuple[str, ...] = (),
        preview: bool = False,
        **overrides: object,
    ) -> Evaluation:
        config = {k: v for k, v in base_config.items() if k.split(":", 1)[1] not in drop}
        for key, value in overrides.items():
            text = value if isinstance(value, str) else json.dumps(value)
            config[f"migctl:{key}"] = text
        return evaluate(pulumi_program, config=config, stack=stack, preview=preview)

    return run


@pytest.fixture(scope="session")
def test_env(run_program: Evaluate) -> Evaluation:
    return run_program("test")


@pytest.fixture(scope="session")
def prod_env(run_program: Evaluate) -> Evaluation:
    return run_program(
        "prod",
        certificateArn=CERTIFICATE_ARN,
        alarmEmail="payments-oncall@example.com",
        sourceSecretKmsKeyArn=SOURCE_KMS_KEY_ARN,
        availabilityZones=["us-east-1a", "us-east-1b", "us-east-1d"],
        dmsCreateServiceRoles=True,
        dmsEngineVersion="3.5.4",
    )


@pytest.fixture(scope="session")
def no_source_env(run_program: Evaluate) -> Evaluation:
    return run_program("staging", drop=("sourceDbHost", "sourceSecretArn"), natGateways="per-az")


@pytest.fixture(scope="session")
def all_envs(
    test_env: Evaluation, prod_env: Evaluation, no_source_env: Evaluation
) -> dict[str, Evaluation]:
    return {"test": test_env, "prod": prod_env, "staging": no_source_env}
