"""Kernels outlive the daemon: the real daemon with a file kernel store and real ipykernels.

A daemon started with ``--kernel-store`` records its kernels and, on SIGTERM,
leaves them running (closing WebSockets with 1012); the next daemon on the
same store adopts them, so users keep their variables.  What cannot be
adopted (a kernel that died meanwhile, a pid now owned by another process,
a record kgd cannot trust) is forgotten, and no process that is not a
recorded kernel is ever signalled.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from tests.clients.gateway_client import run_restart_scenario
from tests.integration.daemon import Client, Daemon, pid_alive, poll_until
from tests.integration.jlab_scenario import run_restart_scenario as run_jlab_scenario, skip_without_jlab
from tests.integration.ws import connect


def stream_text(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["header"]["msg_type"] == "stream")


def error_name(messages: list[dict[str, Any]]) -> str | None:
    for m in messages:
        if m["header"]["msg_type"] == "error":
            return m["content"]["ename"]
    return None


class StoreTestCase(unittest.TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.store = os.path.abspath(self.mktemp())
        self.daemons: list[Daemon] = []
        self.addCleanup(self._kill_everything)

    def _kill_everything(self) -> defer.Deferred[Any]:
        """Whatever a failed test left: no kernel outlives the test."""
        for daemon in self.daemons:
            if not daemon.has_exited:
                daemon.signal(signal.SIGKILL)
            daemon.kill_kernels()
        return poll_until(lambda: all(daemon.has_exited for daemon in self.daemons))

    @defer.inlineCallbacks
    def daemon(self, *args: str) -> Any:
        daemon = Daemon(["--kernel-store", self.store, "--list-kernels", *args])
        self.daemons.append(daemon)
        yield daemon.start()
        client = Client(daemon)
        yield poll_until(lambda: client.request("GET", "/readyz").addCallback(lambda r: r[0] == 200), timeout=60)
        return daemon, client

    @defer.inlineCallbacks
    def kernel_with(self, daemon: Daemon, client: Client, value: int) -> Any:
        """A new kernel in which ``x`` is ``value``."""
        status, _, body = yield client.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201, body)
        ws = yield connect(daemon.ws_url, body["id"], session_id=f"session-{value}")
        out = yield ws.execute(f"x = {value}")
        self.assertIsNone(error_name(out))
        return body["id"], ws

    def record(self, kernel_id: str) -> dict[str, Any]:
        with open(os.path.join(self.store, f"{kernel_id}.json"), "rb") as f:
            return json.loads(f.read())

    @defer.inlineCallbacks
    def value_of_x(self, daemon: Daemon, kernel_id: str, session: str) -> Any:
        ws = yield connect(daemon.ws_url, kernel_id, session_id=session)
        out = yield ws.execute("print(x)")
        yield ws.close()
        return stream_text(out).strip()


class RestartTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_sigterm_leaves_kernels_for_the_next_daemon(self) -> None:
        """SIGTERM: exit 0, clients told 1012, kernels live on; the next daemon lists them, state intact, fully usable."""
        first, client = yield self.daemon()
        kernels = []
        for value in (10, 20, 30):
            kernels.append((yield self.kernel_with(first, client, value)))
        pids = {kernel_id: self.record(kernel_id)["process"]["pid"] for kernel_id, _ in kernels}
        yield first.stop(kernels_survive=True)
        self.assertEqual(first.exit_code, 0)
        self.assertEqual({ws.close_code for _, ws in kernels}, {1012})
        self.assertTrue(all(pid_alive(pid) for pid in pids.values()))

        second, client = yield self.daemon()
        status, _, listed = yield client.request("GET", "/api/kernels")
        self.assertEqual(status, 200)
        self.assertEqual(sorted(k["id"] for k in listed), sorted(pids))
        for (kernel_id, _), value in zip(kernels, (10, 20, 30)):
            self.assertEqual((yield self.value_of_x(second, kernel_id, f"session-{value}")), str(value))
        self.assertEqual(sorted(second.kernel_pids), sorted(pids.values()))

        # An adopted kernel behaves like any other: interrupt, restart, delete.
        (a, _), (b, _), (c, _) = kernels
        ws = yield connect(second.ws_url, a, session_id="session-10")
        running = ws.execute("import threading; print('waiting', flush=True); threading.Event().wait()", timeout=90)
        yield ws.wait_for(lambda m: m["header"]["msg_type"] == "stream")  # the cell runs: SIGINT reaches it
        status, _, _ = yield client.request("POST", f"/api/kernels/{a}/interrupt")
        self.assertEqual(status, 204)
        self.assertEqual(error_name((yield running)), "KeyboardInterrupt")
        yield ws.close()

        status, _, _ = yield client.request("POST", f"/api/kernels/{b}/restart")
        self.assertEqual(status, 200)
        self.assertFalse(pid_alive(pids[b]))
        self.assertNotEqual(self.record(b)["process"]["pid"], pids[b])
        ws = yield connect(second.ws_url, b)
        self.assertEqual(error_name((yield ws.execute("x"))), "NameError")
        yield ws.close()

        status, _, _ = yield client.request("DELETE", f"/api/kernels/{c}")
        self.assertEqual(status, 204)
        self.assertFalse(pid_alive(pids[c]))
        self.assertFalse(os.path.exists(os.path.join(self.store, f"{c}.json")))

        yield second.stop(kernels_survive=True)
        survivors = sorted(pid for pid in second.kernel_pids if pid_alive(pid))
        self.assertEqual(len(survivors), 2)  # a (adopted) and b (restarted), left for a third daemon

        third, client = yield self.daemon("--on-stop", "shutdown")
        status, _, listed = yield client.request("GET", "/api/kernels")
        self.assertEqual(sorted(k["id"] for k in listed), sorted([a, b]))
        yield third.stop()
        self.assertEqual(third.exit_code, 0)
        self.assertEqual([pid for pid in survivors if pid_alive(pid)], [])
        self.assertEqual(sorted(n for n in os.listdir(self.store) if n.endswith(".json")), [])
        self.assertEqual(os.listdir(os.path.join(self.store, "runtime")), [], "connection files went with their kernels")


class CrashTests(StoreTestCase):
    @defer.inlineCallbacks
    def test_sigkill_then_adoption_forgets_only_what_cannot_be_adopted(self) -> None:
        """After SIGKILL the next daemon adopts the survivors; a dead kernel, a reused pid and untrusted records are forgotten."""
        first, client = yield self.daemon()
        (alive, _) = yield self.kernel_with(first, client, 1)
        (killed, _) = yield self.kernel_with(first, client, 2)
        (reused, _) = yield self.kernel_with(first, client, 3)
        first.signal(signal.SIGKILL)
        yield poll_until(lambda: first.has_exited)

        killed_pid = self.record(killed)["process"]["pid"]
        os.killpg(killed_pid, signal.SIGKILL)
        yield poll_until(lambda: not pid_alive(killed_pid))
        # The record of "reused" now names a process started at another time: as if its pid were reused.
        reused_record = self.record(reused)
        reused_pid = reused_record["process"]["pid"]
        reused_record["process"]["start_time"] += 1
        with open(os.path.join(self.store, f"{reused}.json"), "w") as f:
            json.dump(reused_record, f)
        # Records kgd must not trust or cannot read.
        self.plant("00000000-0000-4000-8000-000000000001", b"{not json", 0o600)
        future = dict(self.record(alive), version=99, kernel_id="00000000-0000-4000-8000-000000000002")
        self.plant(future["kernel_id"], json.dumps(future).encode(), 0o600)
        foreign = dict(self.record(alive), kernel_id="00000000-0000-4000-8000-000000000003")
        self.plant(foreign["kernel_id"], json.dumps(foreign).encode(), 0o644)

        second, client = yield self.daemon()
        status, _, listed = yield client.request("GET", "/api/kernels")
        self.assertEqual([k["id"] for k in listed], [alive])
        self.assertEqual((yield self.value_of_x(second, alive, "session-1")), "1")
        self.assertTrue(os.path.exists(os.path.join(self.store, "runtime", f"kernel-{alive}.json")))
        for gone in (killed, reused):
            status, _, body = yield client.request("GET", f"/api/kernels/{gone}")
            self.assertEqual(status, 404, body)
            self.assertFalse(os.path.exists(os.path.join(self.store, f"{gone}.json")))
            self.assertFalse(os.path.exists(os.path.join(self.store, "runtime", f"kernel-{gone}.json")), "its key stays behind")
        self.assertTrue(pid_alive(reused_pid), "a process whose identity does not match was signalled")
        self.assertEqual(second.log.count(b"forgotten:"), 2)
        self.assertIn(b"now belongs to another process", second.log)
        self.assertEqual(second.log.count(b"set aside"), 3)
        status, _, metrics = yield client.request("GET", "/metrics")
        self.assertIn(b"kgd_kernels_lost_total 2.0", metrics)
        self.assertIn(b"kgd_kernels_adopted_total 1.0", metrics)
        yield second.stop(kernels_survive=True)
        os.killpg(reused_pid, signal.SIGKILL)

    def plant(self, kernel_id: str, data: bytes, mode: int) -> None:
        path = os.path.join(self.store, f"{kernel_id}.json")
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)


class UnusableStoreTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_unusable_store_directory_stops_the_daemon_with_the_reason(self) -> None:
        """A read-only or shared store directory: exit 1 with a one-line reason, before listening."""
        cases = {0o500: b"is read-only", 0o755: b"is open to other users"}
        for mode, reason in cases.items():
            path = os.path.abspath(self.mktemp())
            os.makedirs(path)
            os.chmod(path, mode)
            daemon = Daemon(["--kernel-store", "file://" + path])
            try:
                yield daemon.start()
            except AssertionError:
                pass
            yield poll_until(lambda: daemon.has_exited)
            self.assertEqual(daemon.exit_code, 1)
            self.assertIn(b"--kernel-store: " + path.encode(), daemon.log)
            self.assertIn(reason, daemon.log)


class RealClientAcrossRestartTests(StoreTestCase):
    def setUp(self) -> None:
        super().setUp()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.listen = f"tcp:{port}:interface=127.0.0.1"  # the next daemon listens where the client looks

    @defer.inlineCallbacks
    def start(self) -> Any:
        daemon = Daemon(["--kernel-store", self.store, "--list-kernels"], listen=self.listen)
        self.daemons.append(daemon)
        yield daemon.start()
        yield poll_until(lambda: Client(daemon).request("GET", "/readyz").addCallback(lambda r: r[0] == 200), 60)
        return daemon

    @defer.inlineCallbacks
    def restart(self, daemon: Daemon) -> Any:
        """SIGTERM ``daemon`` (its kernels detach) and start the next one on the same port and store."""
        yield daemon.stop(kernels_survive=True)
        self.assertEqual(daemon.exit_code, 0)
        return (yield self.start())

    @defer.inlineCallbacks
    def test_jupyter_server_gateway_client_keeps_its_kernel_across_a_restart(self) -> None:
        """jupyter_server --gateway-url reconnects to the restarted kgd on its own; the variable is still there."""
        first = yield self.start()
        restarted: list[Daemon] = []

        def restart_gateway() -> None:
            restarted.append(threads.blockingCallFromThread(reactor, self.restart, first))

        out = yield threads.deferToThread(run_restart_scenario, first.url, "", restart_gateway)
        self.assertEqual(out["after_restart"], {"status": "ok", "stream": "42\n"})
        self.assertTrue(out["listed"])
        self.assertTrue(out["gateway_kernel_gone"])
        yield restarted[0].stop()

    @defer.inlineCallbacks
    def test_jupyterlab_services_keeps_its_kernel_across_a_restart(self) -> None:
        """@jupyterlab/services: its kernel connection survives a kgd restart and the variable is still there."""
        skip_without_jlab()
        first = yield self.start()
        restarted: list[Daemon] = []
        out = yield run_jlab_scenario(self, first.url, lambda ready: self.restart(first).addCallback(restarted.append))
        self.assertIn("connecting", out["connection_statuses"], "the library saw the 1012 close and reconnected")
        self.assertEqual(out["connection_statuses"][-1], "connected")
        yield restarted[0].stop()
