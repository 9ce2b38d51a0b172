"""The report opens in a real browser: headless Chromium loads it with every request answered, and a screenshot is saved.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``:
NUL-terminated JSON on file descriptors 3 and 4), so no extra Python package is needed.
Debian's ``chromium`` package is installed by ``make chromium`` (a prerequisite of ``make test``);
without it the test skips, saying so.
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
from typing import Any

import pytest

from vkit.hooks.manager import PluginManager
from vkit.workflows.report import write_run_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed: run `make chromium` "
                                                         "(apt-get install -y chromium)")


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``."""

    def __init__(self, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds() -> None:  # the child reads commands on fd 3 and writes replies on fd 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child_r, from_child_w)]  # out of 3/4's way
            for target, fd in zip((3, 4), high):
                os.dup2(fd, target, inheritable=True)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False)  # close_fds would run after preexec_fn and close 3 and 4
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer, self._id, self.events = b"", 0, []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._id += 1
        message = dict(id=self._id, method=method, params=params or {}, **({"sessionId": session} if session else {}))
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._next(timeout)
            if reply.get("id") == self._id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._next(timeout))

    def _next(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_child], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_child)
        os.close(self._from_child)


def load_in_chromium(page: Path, screenshot: Path, profile: Path) -> dict[str, list]:
    """Open ``page``; returns the ``requests`` made, the ``failed`` ones and the page's ``images`` (natural sizes)."""
    tools = DevTools(profile)
    try:
        target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Network", "Page", "Runtime"):
            tools.send(f"{domain}.enable", session=session)
        tools.send("Emulation.setDeviceMetricsOverride",
                   {"width": 1100, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        tools.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        tools.wait_for("Page.loadEventFired")
        images = tools.send("Runtime.evaluate", {"expression": "JSON.stringify(Array.from(document.images).map("
                            "i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.naturalHeight]))",
                            "returnByValue": True}, session=session)["result"]["value"]
        shot = tools.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
    finally:
        tools.close()
    requests = [e["params"]["request"]["url"] for e in tools.events if e.get("method") == "Network.requestWillBeSent"]
    failed = [e["params"] for e in tools.events if e.get("method") == "Network.loadingFailed"]
    return dict(requests=requests, failed=failed, images=json.loads(images))


@pytest.mark.parametrize("kind", ["train", "score"])
def test_report_loads_in_headless_chromium(lite, tmp_path, kind):
    store, runs = lite
    page = write_run_report(store, runs[kind], tmp_path / kind, manager=PluginManager(autoload=False))
    screenshot = tmp_path / f"report-{kind}.png"
    seen = load_in_chromium(page, screenshot, tmp_path / "profile")
    assert seen["failed"] == [], seen["failed"]
    assert seen["requests"] and all(url.startswith("file://") for url in seen["requests"]), seen["requests"]  # no network
    assert seen["images"], "the page shows no image"
    for src, complete, width, height in seen["images"]:
        assert complete and width > 0 and height > 0, f"{src} did not render"
    assert screenshot.stat().st_size > 10_000 and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    shutil.copyfile(screenshot, page.parent / "screenshot.png")  # kept beside the report for a look


def test_a_missing_image_is_a_failed_request(lite, tmp_path):
    """The check above can fail: a page whose image is gone shows up as a failed request."""
    store, runs = lite
    page = write_run_report(store, runs["train"], tmp_path / "broken", manager=PluginManager(autoload=False))
    (page.parent / "roc.png").unlink()
    seen = load_in_chromium(page, tmp_path / "broken.png", tmp_path / "profile")
    assert any(f["errorText"] == "net::ERR_FILE_NOT_FOUND" for f in seen["failed"]), seen["failed"]
