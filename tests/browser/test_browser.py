"""A real browser as kgd's client: a page from another origin, in headless Chromium.

The page (``index.html``, ``app.js``) is served by the test from its own
loopback port, so it is a different origin from kgd.  ``drive.mjs`` opens it
in Debian's Chromium through playwright-core, waits for the page to say
``done`` or ``error``, saves a screenshot and reports what the page shows.
Needs ``/usr/bin/chromium`` (apt-get install chromium) and ``npm ci`` in
this directory; the tests skip, saying so, when either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any
from urllib.parse import urlencode

from twisted.internet import defer, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from twisted.web.server import Site
from twisted.web.static import File

from tests.integration.daemon import Client, Daemon, poll_until

HERE = os.path.dirname(os.path.abspath(__file__))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TOKEN = "browser-token-5d1c"
CORS = ["--allow-headers", "Authorization,Content-Type", "--allow-methods", "GET,POST,DELETE"]


class BrowserTests(unittest.TestCase):
    """The page lists kernelspecs, starts a kernel and runs a cell only when kgd admits its origin."""

    timeout = 180

    def setUp(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise unittest.SkipTest("node is not installed")
        if not os.access(CHROMIUM, os.X_OK):
            raise unittest.SkipTest(f"{CHROMIUM} is missing (apt-get install chromium)")
        if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
            raise unittest.SkipTest("playwright-core is missing (npm ci in tests/browser)")
        self.node = node
        port = reactor.listenTCP(0, Site(File(HERE)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.origin = f"http://127.0.0.1:{port.getHost().port}"

    @defer.inlineCallbacks
    def run_page(self, daemon: Daemon) -> Any:
        """Open the page against ``daemon``; fires with what it shows and the screenshot's path."""
        query = urlencode({"kgd": daemon.url, "token": TOKEN})
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        screenshot = os.path.join(directory, "page.png")
        out, err, code = yield getProcessOutputAndValue(
            self.node, ["drive.mjs", f"{self.origin}/index.html?{query}", screenshot], path=HERE, reactor=reactor
        )
        self.assertEqual(code, 0, (out + err).decode(errors="replace"))
        return json.loads(out.decode().strip().splitlines()[-1]), screenshot

    @defer.inlineCallbacks
    def start_daemon(self, allow_origin: str) -> Any:
        daemon = Daemon(["--auth-token", TOKEN, "--list-kernels", "--allow-origin", allow_origin, *CORS])
        yield daemon.start()
        self.addCleanup(daemon.stop)
        return daemon

    @defer.inlineCallbacks
    def test_page_runs_a_cell(self) -> None:
        """With --allow-origin set to the page's origin, the page lists python3, runs a cell and shows its output."""
        daemon = yield self.start_daemon(self.origin)
        shown, screenshot = yield self.run_page(daemon)
        self.assertEqual(shown["status"], "done", shown)
        self.assertIn("python3", shown["specs"])
        self.assertTrue(shown["kernel"].startswith("python3 "))
        self.assertEqual(shown["output"], "hello from the browser 42\n")
        with open(screenshot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        client = Client(daemon, token=TOKEN)
        # The page deletes its kernel when done.
        yield poll_until(lambda: client.request("GET", "/api/kernels").addCallback(lambda r: r[2] == []))

    @defer.inlineCallbacks
    def test_foreign_origin_cannot_start_a_kernel(self) -> None:
        """When kgd admits another origin only, the page cannot list kernelspecs or start a kernel, and none runs."""
        daemon = yield self.start_daemon("http://trusted.example")
        shown, _ = yield self.run_page(daemon)
        self.assertTrue(shown["status"].startswith("error: could not start a kernel"), shown)
        self.assertIn("could not list kernelspecs", shown["specs"])
        self.assertEqual(shown["kernel"], "none")
        status, _, kernels = yield Client(daemon, token=TOKEN).request("GET", "/api/kernels")
        self.assertEqual((status, kernels), (200, []))
