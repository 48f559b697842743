"""The real daemon with real ipykernel kernels: lifecycle over the REST API and shutdown."""

from __future__ import annotations

import os
import signal
import stat

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.daemon import Client, Daemon, pid_alive, poll_until


class ShutdownTests(unittest.TestCase):
    """Stopping the daemon never leaves a kernel behind."""

    timeout = 120

    @defer.inlineCallbacks
    def test_sigterm_shuts_every_kernel_down(self) -> None:
        """SIGTERM with three kernels running: the daemon exits 0 and every kernel PID is gone."""
        daemon = Daemon()
        yield daemon.start()
        client = Client(daemon)
        for _ in range(3):
            status, _, body = yield client.request("POST", "/api/kernels", {})
            self.assertEqual(status, 201, body)
        self.assertEqual(len(daemon.kernel_pids), 3)
        self.assertTrue(all(pid_alive(pid) for pid in daemon.kernel_pids))
        yield daemon.stop()
        self.assertEqual(daemon.exit_code, 0)
        self.assertEqual([pid for pid in daemon.kernel_pids if pid_alive(pid)], [])

    @defer.inlineCallbacks
    def test_sigint_shuts_every_kernel_down(self) -> None:
        """SIGINT (Ctrl-C) stops the daemon just as cleanly as SIGTERM."""
        daemon = Daemon()
        yield daemon.start()
        status, _, _ = yield Client(daemon).request("POST", "/api/kernels", {})
        self.assertEqual(status, 201)
        daemon.signal(signal.SIGINT)
        yield poll_until(lambda: daemon.has_exited)
        yield daemon.stop()
        self.assertEqual(daemon.exit_code, 0)


class KernelLifecycleTests(unittest.TestCase):
    """Start, inspect, interrupt, restart and delete a real kernel over HTTP."""

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self) -> None:
        self.daemon = Daemon(["--list-kernels", "--auth-token", "s3cret"])
        yield self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.client = Client(self.daemon, token="s3cret")

    @defer.inlineCallbacks
    def test_kernel_lifecycle(self) -> None:
        """A kernel starts idle, keeps its id across restart (with a new process), and is gone after DELETE."""
        status, headers, model = yield self.client.request("POST", "/api/kernels", {"name": "python3", "path": None})
        self.assertEqual(status, 201)
        kernel_id = model["id"]
        self.assertEqual(headers.getRawHeaders(b"location"), [f"/api/kernels/{kernel_id}".encode()])
        self.assertEqual(model["name"], "python3")
        self.assertEqual(model["execution_state"], "idle")
        self.assertEqual(model["connections"], 0)
        self.assertTrue(model["last_activity"].endswith("Z"))

        status, _, listed = yield self.client.request("GET", "/api/kernels")
        self.assertEqual((status, [k["id"] for k in listed]), (200, [kernel_id]))

        status, _, _ = yield self.client.request("POST", f"/api/kernels/{kernel_id}/interrupt")
        self.assertEqual(status, 204)

        first_pid = self.daemon.kernel_pids[-1]
        status, _, restarted = yield self.client.request("POST", f"/api/kernels/{kernel_id}/restart")
        self.assertEqual(status, 200)
        self.assertEqual(restarted["id"], kernel_id)
        self.assertEqual(restarted["execution_state"], "idle")
        self.assertNotEqual(self.daemon.kernel_pids[-1], first_pid)
        self.assertFalse(pid_alive(first_pid))

        second_pid = self.daemon.kernel_pids[-1]
        status, _, body = yield self.client.request("DELETE", f"/api/kernels/{kernel_id}")
        self.assertEqual((status, body), (204, None))
        self.assertFalse(pid_alive(second_pid))
        status, _, error = yield self.client.request("GET", f"/api/kernels/{kernel_id}")
        self.assertEqual(status, 404)
        self.assertIn(kernel_id, error["message"])

    @defer.inlineCallbacks
    def test_connection_file_is_private_and_removed(self) -> None:
        """The connection file is mode 0600 while the kernel runs and removed after shutdown."""
        status, _, model = yield self.client.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201)
        pid = self.daemon.kernel_pids[-1]
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        path = argv[argv.index(b"-f") + 1].decode()
        mode = os.stat(path).st_mode
        self.assertEqual(stat.S_IMODE(mode), 0o600)
        self.assertEqual(os.stat(os.path.dirname(path)).st_mode & 0o777, 0o700)
        yield self.client.request("DELETE", f"/api/kernels/{model['id']}")
        self.assertFalse(os.path.exists(path))

    @defer.inlineCallbacks
    def test_kernel_leads_its_own_process_group(self) -> None:
        """Each kernel runs in a process group of its own, so signals reach all it started."""
        status, _, _ = yield self.client.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201)
        pid = self.daemon.kernel_pids[-1]
        self.assertEqual(os.getpgid(pid), pid)
        self.assertNotEqual(os.getpgid(pid), os.getpgid(self.daemon.transport.pid))

    @defer.inlineCallbacks
    def test_unknown_kernel_actions_are_404(self) -> None:
        """Restart, interrupt, GET and DELETE of an unknown kernel answer 404 with a JSON reason."""
        missing = "00000000-0000-0000-0000-000000000000"
        for method, path in [
            ("POST", f"/api/kernels/{missing}/restart"),
            ("POST", f"/api/kernels/{missing}/interrupt"),
            ("GET", f"/api/kernels/{missing}"),
            ("DELETE", f"/api/kernels/{missing}"),
        ]:
            status, _, body = yield self.client.request(method, path)
            self.assertEqual(status, 404, (method, path))
            self.assertEqual(body["reason"], "Not Found")
            self.assertIn(missing, body["message"])

    @defer.inlineCallbacks
    def test_token_required(self) -> None:
        """Without the token the API answers 401; with it, 200."""
        anonymous = Client(self.daemon)
        status, _, body = yield anonymous.request("GET", "/api/kernelspecs")
        self.assertEqual((status, body["reason"]), (401, "Unauthorized"))
        status, _, body = yield self.client.request("GET", "/api/kernelspecs")
        self.assertEqual(status, 200)
        self.assertIn("python3", body["kernelspecs"])
        self.assertNotIn(b"s3cret", self.daemon.log)


class KernelDeathTests(unittest.TestCase):
    """A kernel that dies on its own is restarted under the same id."""

    timeout = 120

    @defer.inlineCallbacks
    def test_killed_kernel_is_restarted(self) -> None:
        """SIGKILL to a kernel: a new process takes its place and the kernel id still answers."""
        daemon = Daemon()
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)
        status, _, model = yield client.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201)
        first = daemon.kernel_pids[-1]
        os.kill(first, signal.SIGKILL)
        yield poll_until(lambda: len(daemon.kernel_pids) == 2)

        @defer.inlineCallbacks
        def idle_again() -> defer.Deferred[bool]:
            status, _, current = yield client.request("GET", f"/api/kernels/{model['id']}")
            return status == 200 and current["execution_state"] == "idle"

        yield poll_until(idle_again)
        self.assertTrue(pid_alive(daemon.kernel_pids[-1]))
