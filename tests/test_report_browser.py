"""report.html in a real browser: headless Chromium (Debian's `chromium` package), driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: NUL-terminated JSON on file descriptors 3
and 4), so the test needs nothing beyond the standard library and opens no port. Networking is
off three ways: a proxy that does not exist, a host resolver that resolves nothing, and the
protocol's offline emulation; every request the page makes is recorded and must be file: or data:.

Skipped when chromium is not installed; CI installs it (.ci/run).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from longtail.report import write_report
from test_report import EVIL_CLASSES, EVIL_PATH, fake_run, make_tiny_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--remote-debugging-pipe",
         # networking off: no proxy listens on port 9, and no host name resolves
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         "--host-resolver-rules=MAP * ~NOTFOUND"]
TIMEOUT_S = 60


def _above_4(fd: int) -> int:
    """The same pipe end on an fd above 4 (close-on-exec), so wiring fds 3 and 4 in the child
    cannot overwrite a pipe end before it is copied."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
    os.close(fd)
    return high


class Chromium:
    """One headless browser and the DevTools messages it sends; ``call`` waits for a reply and
    keeps every event on the way in ``events``."""

    def __init__(self, profile: Path):
        to_browser_r, self._to_browser = map(_above_4, os.pipe())
        self._from_browser, from_browser_w = map(_above_4, os.pipe())

        def wire_pipes() -> None:
            # in the child, before exec: the protocol's fds 3 (commands) and 4 (replies); dup2 from
            # another fd makes them inheritable, while the pipes' own fds close on exec
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        # close_fds=False: pass_fds would have to name fds 3 and 4 of *this* process, which need not exist
        self.process = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                        preexec_fn=wire_pipes, close_fds=False, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _send(self, method: str, params: dict | None, session: str | None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, session: str) -> dict:
        deadline = time.monotonic() + TIMEOUT_S
        for message in self.events:
            if message.get("method") == event and message.get("sessionId") == session:
                return message
        while True:
            message = self._receive(deadline)
            self.events.append(message)
            if message.get("method") == event and message.get("sessionId") == session:
                return message

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # new and empty
    browser = Chromium(profile)
    yield browser
    browser.close()


class Page:
    """A report opened in a fresh tab, with what happened while it loaded."""

    def __init__(self, browser: Chromium, html: Path):
        self.browser = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=self.session)
        browser.call("Network.emulateNetworkConditions", {"offline": True, "latency": 0, "downloadThroughput": -1,
                                                          "uploadThroughput": -1}, self.session)
        browser.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 900, "deviceScaleFactor": 1,
                                                            "mobile": False}, self.session)
        self.start = len(browser.events)
        browser.call("Page.navigate", {"url": html.resolve().as_uri()}, self.session)
        browser.wait_for("Page.loadEventFired", self.session)

    def events(self, method: str) -> list[dict]:
        return [e["params"] for e in self.browser.events[self.start:]
                if e.get("method") == method and e.get("sessionId") == self.session]

    def errors(self) -> list[str]:
        found = [e["exceptionDetails"].get("text", "") for e in self.events("Runtime.exceptionThrown")]
        found += [str(e["args"]) for e in self.events("Runtime.consoleAPICalled") if e["type"] in ("error", "assert")]
        found += [e["entry"]["text"] for e in self.events("Log.entryAdded") if e["entry"]["level"] == "error"]
        return found

    def requested_urls(self) -> list[str]:
        return [e["request"]["url"] for e in self.events("Network.requestWillBeSent")]

    def evaluate(self, expression: str):
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, self.session)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> bytes:
        size = self.browser.call("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        shot = self.browser.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}}, self.session)
        png = base64.b64decode(shot["data"])
        path.write_bytes(png)
        return png


IMAGES = """Promise.all([...document.images].map(i => i.decode().then(
    () => ({w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}),
    () => ({broken: i.alt}))))"""


def _column(page: Page, table: str) -> list[str]:
    return page.evaluate(f"[...document.querySelectorAll('#{table} tbody tr')].map(r => r.cells[0].textContent)")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return make_tiny_study(tmp_path_factory.mktemp("browser"))


def test_the_report_loads_in_chromium_with_every_figure_and_table(study, chromium, tmp_path):
    out, arms = study
    page = Page(chromium, write_report(out))
    assert page.errors() == []
    urls = page.requested_urls()
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls
    images = page.evaluate(IMAGES)
    figures_on_disk = sorted((out / "figures").glob("*.svg"))
    assert len(images) == len(figures_on_disk) >= 12
    for image in images:
        assert "broken" not in image, image
        assert image["w"] > 0 and image["h"] > 0 and image["shown"] > 0
    assert _column(page, "results") == arms and _column(page, "seed-table") == arms
    assert page.evaluate("document.getElementById('padding').textContent").startswith("Padding: with 'same'")
    assert len(_column(page, "init")) == 2 and len(_column(page, "pretext")) == 5
    assert "transferred" in page.evaluate("document.getElementById('layer-map-0').textContent")
    assert page.evaluate("document.getElementById('puzzles-skipped')") is None
    png = page.screenshot(tmp_path / "report.png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_html_in_class_names_paths_and_configs_shows_as_text_and_runs_nothing(study, chromium, tmp_path):
    out, _ = study
    evil_run = tmp_path / "run"
    fake_run(evil_run / "runs" / "x<script>window.pwned=1<" / "seed-0",  # an arm (a folder) has no "/"
             classes=["<b>bold</b>", "&amp; & \"q\" 'x'", "<script>window.pwned=2</script>"],
             config={"imbalance": "<img src=x onerror=window.pwned=3>", "loss": "<script>window.pwned=4</script>"})
    for html, expected in ((write_report(out), [*EVIL_CLASSES, EVIL_PATH]),
                           (write_report(evil_run), ["x<script>window.pwned=1<", "<b>bold</b>",
                                                     "&amp; & \"q\" 'x'", "<script>window.pwned=2</script>",
                                                     "imbalance=<img src=x onerror=window.pwned=3>",
                                                     "loss=<script>window.pwned=4</script>"])):
        page = Page(chromium, html)
        text = page.evaluate("document.body.innerText")
        for string in expected:
            assert string in text, string
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert page.evaluate("document.scripts.length") == 0
        assert page.evaluate("document.querySelectorAll('img').length") == \
            page.evaluate("document.querySelectorAll('figure > img').length")  # no <img> but the figures
        assert page.evaluate("document.querySelectorAll('b').length") == 0
        assert page.errors() == []
        page.screenshot(tmp_path / f"{html.parent.name}.png")
