"""What the root callback hands every command: settings, output and clients, built lazily.

Settings load on first use, so ``migctl CMD --help`` works even when the
config file is broken.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from migctl.aws import AwsClients
    from migctl.config import Settings
    from migctl.render import Output


class AppState:
    def __init__(
        self,
        *,
        config: Path | None = None,
        output: str | None = None,
        profile: str | None = None,
        region: str | None = None,
        verbose: int = 0,
        quiet: bool = False,
    ) -> None:
        self._config = config
        self._output = output
        self._profile = profile
        self._region = region
        self.verbose = verbose
        self.quiet = quiet
        self._settings: Settings | None = None
        self._out: Output | None = None
        self._aws: AwsClients | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from migctl.config import load_settings

            self._settings = load_settings(
                self._config,
                output=self._output,
                profile=self._profile,
                region=self._region,
                verbose=self.verbose,
            )
        return self._settings

    @property
    def out(self) -> Output:
        if self._out is None:
            from migctl.render import Output

            self._out = Output(self.settings.output, quiet=self.quiet)
        return self._out

    @property
    def aws(self) -> AwsClients:
        if self._aws is None:
            from migctl.aws import AwsClients

            self._aws = AwsClients(self.settings.project)
        return self._aws


def state(ctx: typer.Context) -> AppState:
    """The AppState of the root callback, from any sub-command's context."""
    obj = ctx.find_root().obj
    if not isinstance(
        obj, AppState
    ):  # pragma: no cover - only when a command runs without the root
        obj = AppState()
        ctx.find_root().obj = obj
    return obj
