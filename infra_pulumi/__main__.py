"""Entry point for the ordinary ``pulumi`` CLI (``Pulumi.yaml``: ``main: infra_pulumi/``).

The CLI runs this file as a script with ``infra_pulumi/`` first on
``sys.path``, so the repository root is put in front for the package import.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra_pulumi.program import pulumi_program

pulumi_program()
