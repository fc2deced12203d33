"""Text from people, AWS or a database is printed as it is by every renderer, never read as
rich markup: ``[/x]`` does not crash a table (MarkupError), ``[red]`` is not swallowed."""

from __future__ import annotations

import io

from migctl.cutover.overview import CutoverOverview, CutoverSummary
from migctl.render import Output
from migctl.render.cutover import render_status as render_cutover_status
from migctl.render.sandbox import render_status as render_sandbox_status
from migctl.sandbox.environment import ProcessStatus, SandboxStatus

ODD = "[red]x[/red][/b]"


def _printed(render: object, value: object) -> str:
    stdout = io.StringIO()
    out = Output(stdout=stdout, stderr=io.StringIO(), width=400)
    render(out, value)  # type: ignore[operator]
    return stdout.getvalue()


def test_sandbox_status_prints_a_bracketed_folder_and_name_whole() -> None:
    status = SandboxStatus(
        dir=f"/tmp/{ODD}",
        exists=True,
        processes=(ProcessStatus(name=f"writer{ODD}", pid=1, running=True, port=None),),
        config_path=f"/tmp/{ODD}/migctl.toml",
    )
    text = _printed(render_sandbox_status, status)
    assert f"sandbox in /tmp/{ODD}" in text
    assert f"writer{ODD}" in text and f"config /tmp/{ODD}/migctl.toml" in text
    assert f"no sandbox in /tmp/{ODD}" in _printed(
        render_sandbox_status, SandboxStatus(dir=f"/tmp/{ODD}", exists=False)
    )


def test_cutover_status_prints_a_bracketed_image_whole() -> None:
    summary = CutoverSummary(
        cutover_id="c1",
        started_at="2026-12-05T00:00:00Z",
        image=f"payments:{ODD}",
        phase="completed",
        last_outcome="completed",
        write_freeze_seconds=1.0,
        write_freeze_open=False,
        steps={"preflight": "done"},
        next_commands=(),
    )
    overview = CutoverOverview(journal="j", lock_holder=None, latest=summary, history=(summary,))
    text = _printed(render_cutover_status, overview)
    assert text.count(f"payments:{ODD}") == 2  # the latest and the history row
