"""The validation Lambda: a thin shell over ``migctl.validate.lambda_handler``.

The zip built by ``migctl lambda build`` puts this file at its root next to
the ``migctl`` package, so the chunk checksums run the same SQL here, inside
the VPC, as on an operator's laptop. The import is inside the handler so that
a cold start that only checks the module loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any


def handler(event: dict[str, Any], context: Any) -> Any:
    """Lambda entry point (``handler.handler``)."""
    remote = importlib.import_module("migctl.validate.lambda_handler")
    return remote.handle(event, context)
