"""Operating the real daemon: sd_notify, socket activation, JSON logs without secrets, metrics, probes, units."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from tests.integration import ws
from tests.integration.daemon import REPO_ROOT, Client, Daemon, poll_until

TOKEN = "tok-9f8e7d6c5b4a"
SYSTEMD_DIR = os.path.join(REPO_ROOT, "systemd")
# What systemd-socket-activate does before it execs the service: LISTEN_PID is the service's own pid.
SOCKET_ACTIVATE = ["/bin/sh", "-c", 'export LISTEN_PID=$$; exec "$@"', "sh"]


class NotifySocket(protocol.DatagramProtocol):
    """A Unix datagram socket bound by the test, standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, testcase: unittest.TestCase) -> None:
        directory = tempfile.mkdtemp(prefix="kgd-notify-")
        testcase.addCleanup(shutil.rmtree, directory, True)
        self.path = os.path.join(directory, "notify")
        self.received: list[dict[str, str]] = []
        port = reactor.listenUNIXDatagram(self.path, self)
        testcase.addCleanup(port.stopListening)

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.received.append(dict(line.split("=", 1) for line in data.decode().split("\n") if line))

    def keys(self) -> list[str]:
        """Every key received, in order."""
        return [key for message in self.received for key in message]


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class RunningDaemonTests(unittest.TestCase):
    """One daemon under a NOTIFY_SOCKET with a token and JSON logs, operated as systemd and Prometheus would."""

    timeout = 120

    @defer.inlineCallbacks
    def test_notify_probes_metrics_and_logs(self) -> None:
        """READY=1 after listening, probes and status answer, metrics move with a kernel, STOPPING=1 on stop,
        every log line is JSON with stable fields, and the token never appears in the log."""
        notify = NotifySocket(self)
        daemon = Daemon(["--auth-token", TOKEN, "--log-format", "json"], env={"NOTIFY_SOCKET": notify.path})
        yield daemon.start()
        self.addCleanup(lambda: daemon.has_exited or daemon.stop())
        yield poll_until(lambda: "READY" in notify.keys())
        self.assertEqual(notify.received[-1], {"READY": "1", "STATUS": "serving 0 kernels"})

        anonymous = Client(daemon)
        client = Client(daemon, token=TOKEN)
        status, _, body = yield anonymous.request("GET", "/healthz")
        self.assertEqual((status, body), (200, {"status": "ok"}))
        status, _, body = yield anonymous.request("GET", "/readyz")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["checks"], {"listening": True, "kernelspecs": True})
        status, _, _ = yield anonymous.request("GET", "/metrics")
        self.assertEqual(status, 401)

        before = yield self.metrics(client)
        python3 = (("kernelspec", "python3"),)
        self.assertNotIn(("kgd_kernel_starts_total", python3), before)
        self.assertEqual([key for key in before if key[0].startswith("kgd_websocket_messages")], [])

        # The token travels as ?token=, as a header and in a cookie: none may reach the log.
        status, _, kernel = yield anonymous.request(
            "POST", f"/api/kernels?token={TOKEN}", {"name": "python3"}, headers={"Cookie": f"token={TOKEN}; _xsrf=x"}
        )
        self.assertEqual(status, 201, kernel)
        status, _, _ = yield client.request("POST", f"/api/kernels/{kernel['id']}/restart")
        self.assertEqual(status, 200)
        # A browser-style WebSocket: the token in the query string.
        connection = yield ws.connect(daemon.ws_url, kernel["id"], token=TOKEN)
        replies = yield connection.execute("print('x' * 10)")
        self.assertIn("xxxxxxxxxx\n", [m["content"].get("text") for m in replies])

        during = yield self.metrics(client)
        self.assertEqual(during[("kgd_websocket_connections", ())], 1)
        shell_in = ("kgd_websocket_messages_total", (("channel", "shell"), ("direction", "in")))
        iopub_out = ("kgd_websocket_messages_total", (("channel", "iopub"), ("direction", "out")))
        shell_out = ("kgd_websocket_bytes_total", (("channel", "shell"), ("direction", "out")))
        self.assertEqual(during[shell_in], 1)
        self.assertGreaterEqual(during[iopub_out], 3)  # busy, stream, idle (execute_input too)
        self.assertGreater(during[shell_out], 100)  # the execute_reply
        status, _, model = yield client.request("GET", "/api/status")
        self.assertEqual((status, model["kernels"], model["connections"]), (200, 1, 1))
        yield connection.close()
        yield poll_until(lambda: self.metrics(client).addCallback(lambda m: m[("kgd_websocket_connections", ())] == 0))

        after = yield self.metrics(client)
        self.assertEqual(after[("kgd_kernel_starts_total", python3)], 1)
        self.assertEqual(after[("kgd_kernels_running", python3)], 1)
        self.assertEqual(after[("kgd_kernel_start_seconds_count", python3)], 1)
        self.assertGreater(after[("kgd_kernel_start_seconds_sum", python3)], 0)
        self.assertEqual(after[("kgd_kernel_restarts_total", (("kernelspec", "python3"), ("reason", "request")))], 1)
        created = ("kgd_http_requests_total", (("method", "POST"), ("route", "/api/kernels"), ("status", "201")))
        self.assertEqual(after[created], 1)
        scraped = ("kgd_http_requests_total", (("method", "GET"), ("route", "/metrics"), ("status", "200")))
        self.assertGreater(during[scraped], before.get(scraped, 0))
        self.assertGreater(after[scraped], during[scraped])

        status, _, model = yield client.request("GET", "/api/status")
        self.assertEqual(status, 200)
        self.assertEqual((model["kernels"], model["connections"]), (1, 0))
        for key in (shell_in, iopub_out, shell_out):
            self.assertGreaterEqual(after[key], during[key])
        self.assertGreaterEqual(model["last_activity"], model["started"])

        yield daemon.stop()
        self.assertEqual(notify.received[-1], {"STOPPING": "1", "STATUS": "stopping: shutting kernels down"})
        self.assertEqual(notify.keys().count("READY"), 1)

        self.assertNotIn(TOKEN.encode(), daemon.log)
        records = [json.loads(line) for line in daemon.log.decode().splitlines() if line.strip()]
        started = [r for r in records if r.get("event") == "kernel_started"]
        self.assertEqual([(r["kernel_id"], r["spec_name"]) for r in started], [(kernel["id"], "python3")])
        access = [r for r in records if r.get("event") == "http_request" and r.get("route") == "/api/kernels"]
        self.assertEqual(len(access), 1)
        self.assertEqual(access[0]["path"], "/api/kernels?token=[secret]")
        self.assertEqual((access[0]["method"], access[0]["status"]), ("POST", 201))
        self.assertIsInstance(access[0]["duration_ms"], float)
        self.assertTrue(any(r.get("kernel_id") == kernel["id"] and r["namespace"].startswith("kgd.kernels") for r in records))

    @defer.inlineCallbacks
    def metrics(self, client: Client) -> Any:
        status, headers, body = yield client.request("GET", "/metrics")
        self.assertEqual(status, 200)
        return scrape(body.decode())


class PrespawnReadinessTests(unittest.TestCase):
    """With --prespawn-count, kgd is ready only once the prespawned kernels are up."""

    timeout = 90

    @defer.inlineCallbacks
    def test_ready_after_prespawn(self) -> None:
        """READY=1 comes after both prespawned kernels started, and /readyz reports the pool as filled."""
        notify = NotifySocket(self)
        daemon = Daemon(["--prespawn-count", "2", "--log-format", "json"], env={"NOTIFY_SOCKET": notify.path})
        yield daemon.start()
        self.addCleanup(daemon.stop)
        yield poll_until(lambda: "READY" in notify.keys(), timeout=60)
        self.assertEqual(notify.received[-1], {"READY": "1", "STATUS": "serving 2 kernels"})

        def events() -> list[Any]:
            return [json.loads(line).get("event") for line in daemon.log.decode().splitlines() if line.startswith("{")]

        # The log arrives through a pipe, so it can trail the notify socket's READY.
        yield poll_until(lambda: "ready" in events(), timeout=30)
        seen = events()
        self.assertEqual(seen.count("kernel_started"), 2)
        self.assertGreater(seen.index("ready"), max(i for i, e in enumerate(seen) if e == "kernel_started"))
        status, _, body = yield Client(daemon).request("GET", "/readyz")
        self.assertEqual((status, body["checks"].get("prespawn")), (200, True))


class SocketActivationTests(unittest.TestCase):
    """kgd serves on a listening socket it inherits, as systemd's kgd.socket hands it over."""

    timeout = 60

    @defer.inlineCallbacks
    def test_serves_on_inherited_socket(self) -> None:
        """With fd 3 listening, LISTEN_FDS=1, LISTEN_FDNAMES and LISTEN_PID set to its own pid, kgd answers on that socket."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        notify = NotifySocket(self)
        daemon = Daemon(
            ["--auth-token", TOKEN],
            # systemd names each socket (its unit's name by default); Twisted requires the names.
            env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "kgd.socket", "NOTIFY_SOCKET": notify.path},
            listen="systemd:domain=INET:index=0",
            wrapper=SOCKET_ACTIVATE,
            inherit_fds={3: listener.fileno()},
        )
        yield daemon.start()
        self.addCleanup(daemon.stop)
        self.assertEqual(daemon.port, port)
        listener.close()  # the daemon holds its own copy now
        status, _, body = yield Client(daemon, token=TOKEN).request("GET", "/api")
        self.assertEqual(status, 200, body)
        yield poll_until(lambda: "READY" in notify.keys())


class UnitFileTests(unittest.TestCase):
    """The shipped systemd units are valid as systemd reads them."""

    def test_systemd_analyze_verify(self) -> None:
        """``systemd-analyze verify`` accepts both units without a single warning."""
        tool = shutil.which("systemd-analyze")
        if tool is None:
            raise unittest.SkipTest("systemd-analyze is not installed (Debian: apt-get install systemd)")
        units = [os.path.join(SYSTEMD_DIR, name) for name in ("kgd.socket", "kgd.service")]
        result = subprocess.run([tool, "verify", *units], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        complaints = [line for line in (result.stdout + result.stderr).splitlines() if "kgd." in line]
        self.assertEqual(complaints, [])

    def test_units_say_what_kgd_needs(self) -> None:
        """The service is Type=notify, adopts the socket unit's first socket, keeps a private kernel store
        and leaves the kernels kgd detaches to the next start (systemd kills only kgd)."""
        with open(os.path.join(SYSTEMD_DIR, "kgd.service")) as f:
            service = f.read()
        for line in (
            "Type=notify", "KillMode=process", "Restart=on-failure", "RuntimeDirectory=kgd", "StateDirectoryMode=0700",
            "NoNewPrivileges=yes",
        ):
            self.assertIn("\n" + line + "\n", service)
        self.assertIn("--listen systemd:domain=INET:index=0", service)
        self.assertIn("--kernel-store file://%S/kgd/kernels", service)
        with open(os.path.join(SYSTEMD_DIR, "kgd.socket")) as f:
            self.assertIn("ListenStream=127.0.0.1:8888", f.read())
