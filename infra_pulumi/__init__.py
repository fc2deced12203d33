"""The Pulumi program for migctl's AWS side: network, Aurora, ECS, DMS and monitoring.

``program.pulumi_program`` is the entry point, used by ``Pulumi.yaml`` (through
``__main__.py``), by migctl's Automation API wiring and, under mocks, by
``migctl plan`` and the tests (``offline.evaluate``). Importing this package
imports nothing from pulumi.
"""
