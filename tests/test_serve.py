"""`rollback-tui serve`: the watch view in a real browser, and nothing for a request without the token.

The browser is the system's headless Chromium (Debian `chromium` + `chromium-driver`) driven by Selenium.
Its page draws the terminal on a canvas (xterm.js), so there is no DOM text to read: the test reads what
the page's websocket received — the served view's own output — and finds the verdict in it. Missing
browser: skipped here, a failure under CI=true (where .ci/run installs it).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import require_binary
from rollback_tui.core.resume import fold_journal
from rollback_tui.core.verdict import verdict
from test_ui_support import JOURNALS
from watch_support import REPO, ended_journal

pytestmark = pytest.mark.integration
ANSI = re.compile(r"\x1b(?:\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-B]|[=>78])")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """`rollback-tui serve JOURNAL` on a free loopback port → (the URL it printed, port, journal)."""
    journal = ended_journal(JOURNALS / "rehearsal-full.jsonl", tmp_path / "served.jsonl")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollback_tui", "serve", str(journal), "--playbook", "playbooks/demo.yaml"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        env={**os.environ, "ROLLBACK_TUI_DATA_DIR": str(tmp_path / "data")}, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if line.startswith("Open: "):
                url = line.split(" ", 1)[1].strip()
                break
        assert url, proc.stderr.read() if proc.stderr else "serve printed no URL"
        port = int(url.split(":")[2].split("/")[0])
        deadline = time.monotonic() + 20
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not listen"
            time.sleep(0.05)
        yield url, port, journal
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # serve and the watch processes it started for browsers
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _listening(port: int) -> list[str]:
    """Local addresses listening on `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for row in list(fh)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if int(hex_port, 16) == port and state == "0A":
                    found.append(address)
    return found


def chrome():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # a dev dependency: missing means the venv is not the dev one
        reason = "selenium is not installed (pip install -e '.[dev]')"
        pytest.fail(reason) if os.environ.get("CI", "").lower() == "true" else pytest.skip(reason)
    browser = require_binary("chromium")
    driver = require_binary("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--window-size=1600,1000"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def received_text(driver) -> str:
    """What the page's websocket received so far, as text (terminal escapes removed)."""
    chunks = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.webSocketFrameReceived":
            continue
        response = message["params"]["response"]
        data = response["payloadData"]
        chunks.append(base64.b64decode(data) if response["opcode"] == 2 else data.encode())
    return ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def test_a_headless_browser_opens_the_served_url_and_reads_the_verdict(served) -> None:
    url, _, journal = served
    state, _ = fold_journal(journal)
    assert state.ended is not None
    word = verdict(state, state.ended.ts, 5.0).word
    shown = " ".join(word)  # share mode, forced by serve: the verdict letter-spaced, for the call
    driver = chrome()
    try:
        driver.get(url)
        text = ""
        deadline = time.monotonic() + 60
        while shown not in text:
            assert time.monotonic() < deadline, f"the page never showed {shown!r}; it got: {text[-2000:]!r}"
            time.sleep(0.5)
            text += received_text(driver)
        assert "SESSION ENDED" in text and "read-only view" in text
        assert driver.current_url == url.rsplit("/t/", 1)[0] + "/"  # not the token, for a shared screen
        assert driver.find_elements("css selector", ".textual-terminal canvas")  # drawn by the page's xterm
        cookie = driver.get_cookie("rollback_tui_token")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    finally:
        driver.quit()


def test_a_request_without_the_token_is_refused(served) -> None:
    url, port, _ = served
    assert _listening(port) == ["0100007F"]  # 127.0.0.1 only (the default)
    base = f"http://127.0.0.1:{port}"
    token = url.rsplit("/t/", 1)[1]
    for path in ("/", "/t/wrong", f"/t/{token[:-1]}", f"/?token={token}", "/static/js/textual.js", "/ws"):
        assert httpx.get(base + path).status_code == 403, path
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}  # fmt: skip
    assert httpx.get(base + "/ws", headers=upgrade).status_code == 403  # no view process for it
    assert httpx.get(base + "/ws", headers=upgrade, cookies={"rollback_tui_token": "x"}).status_code == 403
    entry = httpx.get(url)  # the printed URL: a cookie, and on to / (the token leaves the address bar)
    assert entry.status_code == 303 and entry.headers["location"] == "/"
    assert entry.headers["referrer-policy"] == "no-referrer"
    cookies = dict(entry.cookies)
    page = httpx.get(base + "/", cookies=cookies)
    assert page.status_code == 200 and "textual-terminal" in page.text
    assert httpx.get(base + "/static/js/textual.js", cookies=cookies).status_code == 200
