"""mypy (strict) checks the AWS calls only if the clients are typed: none is a bare ``Any``."""

from __future__ import annotations

import ast

from source_support import MODULES

CLIENT_NAMES = {
    "dms",
    "ecs",
    "cloudwatch",
    "s3",
    "sns",
    "sts",
    "elbv2",
    "ec2",
    "sm",
    "secretsmanager",
}


def test_no_boto3_client_parameter_or_field_is_typed_any() -> None:
    untyped = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.arg) and node.arg in CLIENT_NAMES:
                annotation = node.annotation
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                annotation = node.annotation if node.target.id in CLIENT_NAMES else None
            else:
                continue
            if annotation is not None and ast.unparse(annotation) == "Any":
                untyped.append(f"{name}:{node.lineno}")
    assert untyped == []


def test_the_client_factory_is_typed_by_service_name() -> None:
    """``AwsClients.client("dms")`` has an overload per service migctl uses (mypy reads them)."""
    source = MODULES["migctl.aws"].read_text()
    for service in ("dms", "ecs", "cloudwatch", "s3", "sns", "sts", "secretsmanager", "lambda"):
        assert f'Literal["{service}"]' in source
