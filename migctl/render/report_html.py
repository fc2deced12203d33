"""The cutover report as one self-contained HTML page: inline CSS and inline SVG, nothing fetched.

No script, no font, no image, no link to anything outside the file: it opens
the same offline, attached to a ticket, or printed to PDF. The timeline chart
draws each step's attempts and each undo as bars on one time axis, shades the
write freeze with its length, and plots the CDC latency the journal measured.
Every text is escaped (:func:`html.escape`).
"""

from __future__ import annotations

from html import escape

from migctl.cutover.evidence import CutoverReport
from migctl.render.report import (
    Section,
    Table,
    freeze_line,
    offset,
    outcome_line,
    sections,
    span_seconds,
)

CHART_WIDTH = 960
LABEL_WIDTH = 170
ROW_HEIGHT = 18
CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;
  margin:24px auto;max-width:1100px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
.outcome{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.ok{background:#1a7f37}.bad{background:#cf222e}.warn{background:#9a6700}
table{border-collapse:collapse;margin:6px 0 14px;width:100%;font-size:12.5px}
th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top;
  word-break:break-word}
th{background:#f6f8fa}caption{text-align:left;font-weight:600;padding:4px 0}
p.note{margin:4px 0}.muted{color:#57606a}
svg text{font:11px system-ui,sans-serif;fill:#1b1f24}
svg .step{fill:#0969da}svg .undo{fill:#bf8700}svg .failed,svg .undo_failed{fill:#cf222e}
svg .interrupted,svg .running{fill:#8c959f}svg .freeze{fill:#cf222e;fill-opacity:.12;
  stroke:#cf222e;stroke-dasharray:4 3}svg .axis{stroke:#8c959f}svg .latency{fill:none;
  stroke:#8250df;stroke-width:1.5}svg .point{fill:#8250df}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}table,svg{break-inside:avoid}}
"""


def to_html(report: CutoverReport) -> str:
    good = report.outcome in ("completed", "finalized", "paused")
    css_class = "ok" if good else ("warn" if report.outcome == "unfinished" else "bad")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No request leaves the page: not even a favicon is fetched.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        '<link rel="icon" href="data:,">',
        f"<title>Cutover {escape(report.cutover_id)}: {escape(report.outcome)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Cutover {escape(report.cutover_id)} "
        f'<span class="outcome {css_class}">{escape(outcome_line(report))}</span></h1>',
        f'<p class="muted">Environment {escape(str(report.environment))}. '
        f"Write freeze: {escape(freeze_line(report))}. Generated {escape(report.generated_at)} "
        f"by {escape(report.generated_by)} from the journal {escape(report.journal)}.</p>",
    ]
    for section in sections(report):
        parts.append(_section(section, report))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _section(section: Section, report: CutoverReport) -> str:
    out = [f'<section id="{section.anchor}"><h2>{escape(section.title)}</h2>']
    if section.anchor == "timeline":
        out.append(timeline_svg(report))
        out.append(latency_svg(report))
    out += [f'<p class="note">{escape(n)}</p>' for n in section.notes]
    out += [_table(t) for t in section.tables]
    out.append("</section>")
    return "\n".join(out)


def _table(table: Table) -> str:
    out = ["<table>"]
    if table.caption:
        out.append(f"<caption>{escape(table.caption)}</caption>")
    if any(table.headers):
        out.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in table.headers) + "</tr>")
    for row in table.rows:
        if not any(table.headers) and len(row) == 2:  # a fact and its value
            out.append(f"<tr><th>{escape(row[0])}</th><td>{escape(row[1])}</td></tr>")
        else:
            out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _extent(report: CutoverReport) -> float:
    ends = [offset(report, s.end or s.start) for s in report.timeline]
    ends.append(offset(report, report.ended_at))
    return max([e for e in ends if e is not None] + [0.001])


def timeline_svg(report: CutoverReport) -> str:
    """Each span a bar on its step's row, the freeze window shaded, seconds on the axis."""
    if not report.timeline or report.started_at is None:
        return '<p class="note">No step ran: there is no timeline to draw.</p>'
    total = _extent(report)
    plot = CHART_WIDTH - LABEL_WIDTH - 40
    rows = list(dict.fromkeys((s.kind, s.step) for s in report.timeline))
    height = 30 + ROW_HEIGHT * len(rows) + 24

    def x(seconds_from_start: float) -> float:
        return LABEL_WIDTH + plot * max(0.0, seconds_from_start) / total

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{CHART_WIDTH}" '
        f'height="{height}" viewBox="0 0 {CHART_WIDTH} {height}" role="img" '
        f'aria-label="Timeline of cutover {escape(report.cutover_id)}">'
    ]
    freeze = report.freeze
    start = offset(report, freeze.started_at)
    if start is not None:
        end = offset(report, freeze.ended_at) if freeze.ended_at else total
        width = max(2.0, x(end or total) - x(start))
        out.append(
            f'<rect class="freeze" data-seconds="{freeze.seconds}" x="{x(start):.1f}" y="18" '
            f'width="{width:.1f}" height="{ROW_HEIGHT * len(rows) + 12}">'
            f"<title>write freeze {freeze.seconds} s</title></rect>"
        )
        label = f"write freeze {freeze.seconds:.2f} s" if freeze.seconds is not None else ""
        out.append(f'<text x="{x(start):.1f}" y="13">{escape(label)}</text>')
    for index, (kind, step) in enumerate(rows):
        y = 24 + index * ROW_HEIGHT
        name = f"undo {step}" if kind == "undo" else step
        out.append(f'<text x="4" y="{y + 12}">{escape(name)}</text>')
    for span in report.timeline:
        y = 24 + rows.index((span.kind, span.step)) * ROW_HEIGHT
        begin = offset(report, span.start) or 0.0
        finish = offset(report, span.end) if span.end else total
        width = max(2.0, x(finish or begin) - x(begin))
        took = span_seconds(span)
        tip = f"{span.kind} {span.step}: {span.status}" + (f", {took:.3f} s" if took else "")
        out.append(
            f'<rect class="bar {escape(span.kind)} {escape(span.status)}" '
            f'data-step="{escape(span.step)}" data-kind="{escape(span.kind)}" '
            f'x="{x(begin):.1f}" y="{y + 3}" width="{width:.1f}" height="{ROW_HEIGHT - 6}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    axis_y = 30 + ROW_HEIGHT * len(rows)
    out.append(
        f'<line class="axis" x1="{LABEL_WIDTH}" y1="{axis_y}" x2="{LABEL_WIDTH + plot}" '
        f'y2="{axis_y}"/>'
    )
    for tick in range(5):
        at = total * tick / 4
        out.append(f'<text x="{x(at) - 8:.1f}" y="{axis_y + 14}">{at:.1f} s</text>')
    out.append("</svg>")
    return "\n".join(out)


def latency_svg(report: CutoverReport) -> str:
    """The CDC latency points the journal holds, on the timeline's time axis."""
    points = [(offset(report, p.at), p) for p in report.latency]
    points = [(at, p) for at, p in points if at is not None]
    if not points:
        return '<p class="note">The journal holds no CDC latency measurement.</p>'
    total = _extent(report)
    plot = CHART_WIDTH - LABEL_WIDTH - 40
    top = max(p.seconds for _, p in points) or 1.0
    height = 90

    def xy(at: float, value: float) -> tuple[float, float]:
        return LABEL_WIDTH + plot * at / total, 70 - 55 * value / top

    coords = [xy(at or 0.0, p.seconds) for at, p in points]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="latency-chart" width="{CHART_WIDTH}" '
        f'height="{height}" viewBox="0 0 {CHART_WIDTH} {height}" role="img" '
        'aria-label="CDC latency">',
        f'<text x="4" y="20">CDC latency</text><text x="4" y="34">(max {top:.3g} s)</text>',
        f'<line class="axis" x1="{LABEL_WIDTH}" y1="70" x2="{LABEL_WIDTH + plot}" y2="70"/>',
        '<polyline class="latency" points="'
        + " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        + '"/>',
    ]
    for (cx, cy), (_, p) in zip(coords, points, strict=True):
        out.append(
            f'<circle class="point" cx="{cx:.1f}" cy="{cy:.1f}" r="3">'
            f"<title>{escape(f'{p.seconds:g} s: {p.what}')}</title></circle>"
        )
    out.append("</svg>")
    return "\n".join(out)
