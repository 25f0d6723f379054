"""Load every page of a built site in headless Chromium and read back what a reader would see.

Each page is served over HTTP from a copy of the site with `probe.js` appended, and opened by
`chromium --headless --dump-dom` at the theme's default desktop width (1280 px: both
sidebars shown, a content column of about 700 px). The probe writes a JSON report into the
DOM: content clipped by its box, and every resource the page loaded.
"""

from __future__ import annotations

import contextlib
import functools
import html
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROBE = Path(__file__).with_name("probe.js")
WINDOW = (1280, 900)
#: Where the pages are served from: any other origin is outside the site.
ORIGIN = "http://127.0.0.1:"
#: Chromium without its background services: this machine's network is closed, and the
#: probe must see only what the page itself asks for.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
REPORT = re.compile(r'<pre id="snrkit-layout-report">(.*?)</pre>', re.DOTALL)


def chromium() -> str | None:
    """The path of a Chromium binary, or None when none is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """An HTTP server on a free local port serving `folder`; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{ORIGIN}{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        pass


def probe_site(site: Path, browser: str, *, workers: int = 2) -> dict[str, dict]:
    """The probe's report for every HTML page of `site`, keyed by the page's path in the site."""
    script = f"<script>{PROBE.read_text(encoding='utf-8')}</script></body>"
    with tempfile.TemporaryDirectory(prefix="snrkit-layout-") as tmp:
        copy = Path(tmp) / "site"
        shutil.copytree(site, copy)
        pages = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*.html") if p.name != "404.html")
        for page in pages:
            path = copy / page
            path.write_text(path.read_text(encoding="utf-8").replace("</body>", script, 1), encoding="utf-8")
        with serve(copy) as base, ThreadPoolExecutor(workers) as pool:
            reports = pool.map(lambda page: _probe_page(browser, base + page, Path(tmp)), pages)
            return dict(zip(pages, reports))


def _probe_page(browser: str, url: str, tmp: Path) -> dict:
    with tempfile.TemporaryDirectory(dir=tmp) as profile:
        result = subprocess.run(
            [
                browser, *FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "--virtual-time-budget=10000", "--dump-dom", url,
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )
    match = REPORT.search(result.stdout)
    if match is None:
        raise RuntimeError(f"no layout report from {url} (chromium exit {result.returncode}): {result.stderr[-2000:]}")
    return json.loads(html.unescape(match.group(1)))

