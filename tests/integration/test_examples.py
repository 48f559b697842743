"""The README's example client works against the real daemon."""

from __future__ import annotations

import os
import sys

from twisted.internet import defer, utils
from twisted.trial import unittest

from tests.integration.daemon import REPO_ROOT, Client, Daemon

EXAMPLE = os.path.join(REPO_ROOT, "examples", "run_cell.py")


class RunCellExampleTests(unittest.TestCase):
    """examples/run_cell.py, as the README shows it."""

    timeout = 120

    @defer.inlineCallbacks
    def test_prints_the_cell_output_and_deletes_its_kernel(self) -> None:
        """The example prints a cell's stream output and error, and leaves no kernel behind."""
        daemon = Daemon(["--auth-token", "s3cret", "--list-kernels"])
        yield daemon.start()
        self.addCleanup(daemon.stop)
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, [EXAMPLE, "--url", daemon.url, "--token", "s3cret", "print('hello', 6 * 7); 1/0"], env=os.environ
        )
        self.assertEqual(code, 0, err)
        self.assertEqual(out.decode().splitlines(), ["hello 42", "ZeroDivisionError: division by zero"])
        status, _, kernels = yield Client(daemon, token="s3cret").request("GET", "/api/kernels")
        self.assertEqual((status, kernels), (200, []))
