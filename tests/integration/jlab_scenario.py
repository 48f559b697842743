"""@jupyterlab/services keeping its kernel through a disruption: ``tests/clients/jlab/restart_scenario.mjs`` run from a test.

The Node scenario starts a kernel through the library, sets ``x = 42``,
says it is ready (one JSON line), waits for a line on stdin, then prints
``x`` on its same kernel connection and reports what it saw.  What happens
in between (a kgd restart, a replica killed) is the caller's.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from tests.integration.daemon import REPO_ROOT

JLAB_DIR = os.path.join(REPO_ROOT, "tests", "clients", "jlab")


class JlabScenario(protocol.ProcessProtocol):
    """A Node scenario speaking JSON lines on stdout, told to go on with a line on stdin."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.stderr = b""
        self.ready: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self._buffer = b""

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            self.lines.append(message)
            if not self.ready.called:
                self.ready.callback(message)

    def errReceived(self, data: bytes) -> None:
        self.stderr = (self.stderr + data)[-4000:]

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(AssertionError(f"scenario ended early: {self.stderr.decode(errors='replace')}"))
        self.ended.callback(getattr(reason.value, "exitCode", None))


def skip_without_jlab() -> None:
    """Skip the test unless node and the installed @jupyterlab/services are here."""
    if shutil.which("node") is None or not os.path.isdir(os.path.join(JLAB_DIR, "node_modules", "@jupyterlab", "services")):
        raise unittest.SkipTest("node and @jupyterlab/services are needed: run `npm ci` in tests/clients/jlab")


@defer.inlineCallbacks
def run_restart_scenario(test: unittest.TestCase, url: str, disrupt: Callable[[dict[str, Any]], Any]) -> Any:
    """Run the scenario against ``url``, ``disrupt(ready)`` (a Deferred) between its two halves; fire with its report.

    Checks what every caller needs: same kernel, ``x`` still 42.
    """
    node = shutil.which("node")
    assert node is not None
    scenario = JlabScenario()
    env = {"PATH": os.environ.get("PATH", ""), "KGD_URL": url, "KGD_TOKEN": ""}
    process = reactor.spawnProcess(scenario, node, [node, "restart_scenario.mjs"], env=env, path=JLAB_DIR)
    test.addCleanup(lambda: scenario.ended.called or process.signalProcess("KILL"))
    ready = yield scenario.ready
    test.assertEqual(ready.get("phase"), "ready", ready)
    yield disrupt(ready)
    process.writeToChild(0, b"go\n")
    code = yield scenario.ended
    test.assertEqual(code, 0, f"{scenario.lines}\n{scenario.stderr.decode(errors='replace')}")
    out = scenario.lines[-1]
    test.assertEqual(out["kernel_id"], ready["kernel_id"])
    test.assertEqual(out["after_restart"], {"status": "ok", "stream": "42\n"})
    return out
