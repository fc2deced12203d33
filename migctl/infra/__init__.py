"""Provisioning with the Pulumi Automation API, the offline plan and its prices, the Lambda zip."""
