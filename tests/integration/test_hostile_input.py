"""Hostile JSON bodies against the real daemon: a 400 with a reason, and nothing left on disk."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.daemon import Client, Daemon

TOKEN = "hostile-token"


class HostileBodyTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.runtime_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.runtime_dir)
        self.daemon = Daemon(["--auth-token", TOKEN, "--runtime-dir", self.runtime_dir])
        yield self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.client = Client(self.daemon, TOKEN)

    def connection_files(self) -> list[str]:
        return sorted(name for name in os.listdir(self.runtime_dir) if name.endswith(".json"))

    @defer.inlineCallbacks
    def test_deep_nesting_and_lone_surrogates(self) -> None:
        """A body nested 5000 deep and an env value with a lone surrogate are 400s with a reason,
        repeatedly, and leave no connection file; a good start does write one (the directory is the one used)."""
        for _ in range(3):
            status, _, error = yield self.client.request("POST", "/api/kernels", b"[" * 5000 + b"]" * 5000)
            self.assertEqual(status, 400)
            self.assertIn("nested too deeply", error["message"])
            status, _, error = yield self.client.request("POST", "/api/kernels", b'{"env": {"KERNEL_X": "\\ud800"}}')
            self.assertEqual(status, 400)
            self.assertIn("surrogate", error["message"])
        self.assertEqual(self.connection_files(), [])
        status, _, model = yield self.client.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201)
        self.assertEqual(len(self.connection_files()), 1)
        status, _, _ = yield self.client.request("DELETE", f"/api/kernels/{model['id']}")
        self.assertEqual(status, 204)
