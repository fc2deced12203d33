"""The cutover report's HTML in a real headless browser (Debian's chromium), with no network.

Chromium runs with every connection sent to a dead proxy on 127.0.0.1 and
every host name unresolvable, and records its network log. A request of the
page (its network isolation key is the file's) shows there whatever its
fate; the browser's own background requests (a clock check, an account
probe) are told apart by their key and ignored. A control page that does
load a remote image and stylesheet proves the check sees them.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from migctl.cutover.evidence import build
from migctl.render.report_html import to_html
from tests.unit.test_cutover_report import RECORDS

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
OFFLINE = (
    "--headless",
    "--no-sandbox",  # root in CI; the page is our own file
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--proxy-server=127.0.0.1:9",  # the discard port: nothing listens, every request fails
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if found is None:
        pytest.fail(
            "no headless browser for the report's page test: install Debian's chromium "
            "(apt-get install chromium; .ci/run does it when it is missing)"
        )
    return found


def run_browser(
    chromium: str, page: Path, work: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    profile = work / f"profile-{len(list(work.iterdir()))}"
    return subprocess.run(
        [chromium, *OFFLINE, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def page_requests(chromium: str, page: Path, work: Path) -> tuple[list[str], str]:
    """The URLs the page asked for (not the browser's own), and the DOM once it loaded."""
    netlog = work / f"{page.stem}-net.json"
    loaded = run_browser(chromium, page, work, f"--log-net-log={netlog}", "--dump-dom")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    log = json.loads(netlog.read_text())
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    urls: dict[int, str] = {}
    of_page: set[int] = set()
    for event in log["events"]:
        name, params = names[event["type"]], event.get("params") or {}
        source = event["source"]["id"]
        if name == "REQUEST_ALIVE" and "url" in params:
            urls[source] = params["url"]
        if name == "URL_REQUEST_START_JOB" and str(
            params.get("network_isolation_key", "")
        ).startswith("file://"):
            of_page.add(source)
    return sorted(urls[s] for s in of_page if s in urls), loaded.stdout


def non_white_fraction(png: bytes) -> float:
    """The share of the screenshot's pixels that are not white (an 8-bit RGB or RGBA PNG)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, data, header = 8, b"", b""
    while at < len(png):
        length, kind = struct.unpack(">I4s", png[at : at + 8])
        chunk = png[at + 8 : at + 8 + length]
        header = chunk if kind == b"IHDR" else header
        data += chunk if kind == b"IDAT" else b""
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(data), width * bpp
    previous, white = bytearray(stride), 0
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for x in range(stride):  # undo the scanline's filter (PNG spec, section 9)
            a = line[x - bpp] if x >= bpp else 0
            b, c = previous[x], previous[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        white += sum(line[x : x + 3] == b"\xff\xff\xff" for x in range(0, stride, bpp))
        previous = line
    return 1 - white / (width * height)


def test_the_report_loads_offline_with_no_request_and_draws_its_chart(
    chromium: str, tmp_path: Path
) -> None:
    report = build(RECORDS, journal="fixture")
    page = tmp_path / "report.html"
    page.write_text(to_html(report))
    requests, dom = page_requests(chromium, page, tmp_path)
    assert requests == []
    # The chart as the browser built it: a bar per attempt and undo, the freeze window.
    bars = dom.count('<rect class="bar ')
    assert bars == len(report.timeline) > 20
    for span in report.timeline:
        assert f'data-step="{span.step}" data-kind="{span.kind}"' in dom
    assert dom.count('<rect class="freeze"') == 1
    assert f"write freeze {report.freeze.seconds:.2f} s" in dom
    assert dom.count('<circle class="point"') == len(report.latency) > 0

    shot = tmp_path / "report.png"
    drawn = run_browser(chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600")
    assert drawn.returncode == 0 and shot.is_file(), drawn.stderr[-2000:]
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    empty = tmp_path / "blank.png"
    run_browser(chromium, blank, tmp_path, f"--screenshot={empty}", "--window-size=1200,1600")
    assert non_white_fraction(empty.read_bytes()) < 0.001  # the measure sees a blank page
    assert non_white_fraction(shot.read_bytes()) > 0.02


def test_the_check_sees_a_page_that_fetches_something(chromium: str, tmp_path: Path) -> None:
    """The control: the same check on a page with a remote image and stylesheet."""
    page = tmp_path / "fetches.html"
    page.write_text(
        '<!DOCTYPE html><html><head><link rel="stylesheet" '
        'href="https://fonts.example.invalid/a.css"></head>'
        '<body><img src="http://example.invalid/x.png"></body></html>'
    )
    requests, _ = page_requests(chromium, page, tmp_path)
    assert requests == ["http://example.invalid/x.png", "https://fonts.example.invalid/a.css"]
