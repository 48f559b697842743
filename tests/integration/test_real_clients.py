"""Real clients, unchanged, against the real daemon: jupyter_server --gateway-url and @jupyterlab/services.

Both scenarios (``tests/clients``) were validated against the reference
gateway; here they run against kgd started with ``--list-kernels`` and a
token, and the JSON they print is checked.  The JupyterLab one needs Node
and ``npm ci`` in ``tests/clients/jlab``; without them it is skipped, saying
which is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from twisted.internet import defer, reactor, threads, utils
from twisted.trial import unittest

from tests.clients.gateway_client import run_gateway_client_scenario
from tests.integration.daemon import Client, Daemon
from tests.integration.jlab_scenario import JLAB_DIR, skip_without_jlab

TOKEN = "real-client-s3cret"


class RealClientTests(unittest.TestCase):
    """Each scenario drives one kgd from start to kernel shutdown and leaves no kernel behind."""

    timeout = 240

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.daemon = Daemon(["--list-kernels", "--auth-token", TOKEN])
        yield self.daemon.start()
        self.addCleanup(self.daemon.stop)

    @defer.inlineCallbacks
    def assert_no_kernels_left(self) -> Any:
        status, _, kernels = yield Client(self.daemon, TOKEN).request("GET", "/api/kernels")
        self.assertEqual((status, kernels), (200, []))

    @defer.inlineCallbacks
    def test_jupyter_server_gateway_client(self) -> None:
        """jupyter_server --gateway-url: kernelspecs, start, execute, interrupt, restart on the same socket, delete."""
        out = yield threads.deferToThread(run_gateway_client_scenario, self.daemon.url, TOKEN)
        self.assertEqual(out["kernelspecs"], ["python3"])
        self.assertEqual((out["default_kernelspec"], out["kernel_name"]), ("python3", "python3"))
        self.assertTrue(out["listed"])
        self.assertEqual(out["stream"], "hello from jupyter_server\n")
        self.assertEqual((out["interrupt"]["status"], out["interrupt"]["ename"]), ("error", "KeyboardInterrupt"))
        self.assertLess(out["interrupt"]["seconds"], 10)
        # kgd's REST restart returns once iopub flows: the first kernel_info gets through.
        self.assertEqual(out["kernel_info_requests"], {"connect": 1, "restart": 1})
        self.assertEqual(out["after_restart"], {"status": "ok", "stream": "False 42\n"})
        self.assertTrue(out["deleted"])
        self.assertTrue(out["gateway_kernel_gone"])
        yield self.assert_no_kernels_left()

    @defer.inlineCallbacks
    def test_jupyterlab_services(self) -> None:
        """@jupyterlab/services: v1 subprotocol, token in the WebSocket URL, stdin, restart with reconnect, shutdown."""
        skip_without_jlab()
        node = shutil.which("node")
        env = {"PATH": os.environ.get("PATH", ""), "KGD_URL": self.daemon.url, "KGD_TOKEN": TOKEN}
        stdout, stderr, code = yield utils.getProcessOutputAndValue(
            node, ["scenario.mjs"], env=env, path=JLAB_DIR, reactor=reactor
        )
        self.assertEqual(code, 0, f"{stdout.decode(errors='replace')}\n{stderr.decode(errors='replace')[-3000:]}")
        out = json.loads(stdout)
        self.assertEqual((out["default_kernelspec"], out["kernelspecs"], out["kernel_name"]), ("python3", ["python3"], "python3"))
        self.assertEqual(out["language"], "python")
        self.assertEqual(out["stream"], "hello from jlab\n")
        self.assertEqual((out["input_prompt"], out["input_echo"]), ("name? ", "'kgd'"))
        self.assertEqual(out["result"], "2")
        self.assertEqual(out["after_restart"], {"status": "ok", "stream": "False 42\n"})
        self.assertTrue(out["shutdown"])
        sockets = out["wire"]["websockets"]
        self.assertGreaterEqual(len(sockets), 2, "the client reconnects after the restart")
        for socket in sockets:
            self.assertEqual(socket["selected"], "v1.kernel.websocket.jupyter.org")
            self.assertIn("token=<token>", socket["url"])
        self.assertEqual(len({s["url"] for s in sockets}), 1, "the reconnect keeps its session_id")
        cache_busted = [h for h in out["wire"]["http"] if h["url"].rsplit("?", 1)[-1].isdigit()]
        self.assertTrue(cache_busted, "the library adds a bare cache-busting query")
        # A status of None is a poll still in flight when the scenario ended.
        answered = [h for h in cache_busted if h["status"] is not None]
        failed = [(h["method"], h["url"].split("?")[0].rsplit("/", 2)[-2], h["status"]) for h in answered if h["status"] >= 400]
        self.assertEqual(failed, [("GET", "kernels", 404)], "only the model of the shut-down kernel is missing")
        yield self.assert_no_kernels_left()
