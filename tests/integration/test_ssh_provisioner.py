"""Remote kernels over SSH: gateway-provisioners' distributed-provisioner against a real sshd.

The test starts its own OpenSSH server on 127.0.0.2 (see ``sshd.py``),
installs the provisioner's Python kernelspec with gateway-provisioners' own
``jupyter-ssh-spec`` tool into a temporary JUPYTER_PATH, and runs kgd on the
asyncio reactor with the provisioner pointed at that server (``GP_SSH_PORT``,
``HOME`` with the client key and known_hosts, the response address on
loopback).  Real ipykernel kernels then start through SSH, run code sent
over kgd's channels WebSocket, are interrupted and restarted through the
provisioner's listener, autorestart after a crash (the WebSocket sees
"restarting" and stays usable), and are gone after DELETE and after the
daemon stops.  Skipped only when sshd or
gateway_provisioners is not installed (the reason says how to install them).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.daemon import Client, Daemon, poll_until
from tests.integration import ws
from tests.integration.provisioning import processes_of, reply_of, stdout
from tests.integration.sshd import HOST, SshServer, free_port, missing

MODEL_KEYS = {"id", "name", "last_activity", "execution_state", "connections"}


def install_ssh_kernelspec(prefix: str) -> str:
    """Install gateway-provisioners' SSH Python kernelspec under ``prefix`` with its own tool; returns the JUPYTER_PATH entry."""
    tool = os.path.join(os.path.dirname(sys.executable), "jupyter-ssh-spec")
    subprocess.run(
        [tool, "install", "--prefix", prefix, "--remote-hosts", HOST, "--log-level", "ERROR"],
        check=True,
        capture_output=True,
    )
    path = os.path.join(prefix, "share", "jupyter", "kernels", "ssh_python", "kernel.json")
    with open(path) as f:
        spec = json.load(f)
    # The remote host's Python: here, the one with ipykernel installed.
    spec["argv"][0] = sys.executable
    with open(path, "w") as f:
        json.dump(spec, f)
    return os.path.join(prefix, "share", "jupyter")


class SshTestCase(unittest.TestCase):
    """A private sshd, gateway-provisioners' SSH kernelspec, and kgd daemons pointed at them."""

    timeout = 180
    skip = missing()

    @defer.inlineCallbacks
    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="kgd-ssh-")
        self.addCleanup(shutil.rmtree, self.root, True)
        jupyter_path = install_ssh_kernelspec(os.path.join(self.root, "prefix"))
        self.sshd = SshServer(os.path.join(self.root, "sshd"))
        yield self.sshd.start()
        self.addCleanup(self.sshd.stop)
        self.kernel_ids: list[str] = []
        self.addCleanup(self._kill_leftovers)
        logs = os.path.join(self.root, "kernel-logs")
        os.mkdir(logs)
        self.env = {
            "JUPYTER_PATH": jupyter_path,
            "HOME": self.sshd.home,
            "GP_SSH_PORT": str(self.sshd.port),
            "GP_REMOTE_USER": "root",
            "GP_UNAUTHORIZED_USERS": "nobody",
            "GP_RESPONSE_IP": "127.0.0.1",
            "GP_RESPONSE_PORT": str(free_port("127.0.0.1")),
            "GP_KERNEL_LOG_DIR": logs,
        }

    @defer.inlineCallbacks
    def start_daemon(self, *args: str) -> Any:
        """A kgd on the asyncio reactor with the provisioner's settings; ``self.daemon`` and ``self.client`` are it."""
        self.daemon = Daemon(["--list-kernels", "--shutdown-wait-time", "2", *args], env=self.env, twistd_args=("-r", "asyncio"))
        yield self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.client = Client(self.daemon)
        yield poll_until(lambda: self.client.request("GET", "/readyz").addCallback(lambda r: r[0] == 200), timeout=60)

    def _kill_leftovers(self) -> None:
        """Safety net: end any process a test kernel left (the assertions have failed by then)."""
        for kernel_id in self.kernel_ids:
            for pid in processes_of(kernel_id):
                os.kill(pid, 9)

    @defer.inlineCallbacks
    def start_kernel(self) -> defer.Deferred[dict]:
        status, _, model = yield self.client.request("POST", "/api/kernels", {"name": "ssh_python"})
        self.assertEqual(status, 201, model)
        self.kernel_ids.append(model["id"])
        return model

    def connection_file(self, kernel_id: str) -> str:
        """The connection file the remote launcher wrote (newest first: a restart writes another)."""
        files = glob.glob(os.path.join(self.sshd.tmpdir, f"kernel-{kernel_id}_*.json"))
        files.sort(key=os.path.getmtime)
        return files[-1]


class DistributedProvisionerTests(SshTestCase):
    """Kernels on an SSH host through kgd."""

    @defer.inlineCallbacks
    def setUp(self) -> None:
        yield super().setUp()
        yield self.start_daemon()

    @defer.inlineCallbacks
    def test_kernel_lifecycle_over_ssh(self) -> None:
        """Over kgd's WebSocket: run code in a kernel started over SSH, interrupt it, restart it, see it autorestart after a crash; DELETE ends it; the API shows no connection info."""
        model = yield self.start_kernel()
        kernel_id = model["id"]
        self.assertEqual(set(model), MODEL_KEYS)
        self.assertIn(f"kernel {kernel_id} (ssh_python) launched on {HOST} by provisioner distributed-provisioner", self.daemon.log.decode())
        self.assertIn("Accepted publickey for root", self.sshd.log)
        remote = processes_of(kernel_id)
        self.assertTrue(remote, "the launcher and kernel run (on the 'remote' host)")

        with open(self.connection_file(kernel_id)) as f:
            key = json.load(f)["key"]
        for path in ("/api/kernels", f"/api/kernels/{kernel_id}"):
            _, _, body = yield self.client.request("GET", path)
            self.assertNotIn(key, json.dumps(body))
            self.assertNotIn("_port", json.dumps(body))

        channels = yield ws.connect(self.daemon.ws_url, kernel_id)
        self.addCleanup(channels.close)
        messages = yield channels.execute("import os; print(os.getpid(), 6 * 7)")
        pid, answer = stdout(messages).split()
        self.assertEqual(answer, "42")
        self.assertIn(int(pid), remote)

        waiting = ws.execute_request("import threading; print('waiting', flush=True); threading.Event().wait()")
        channels.send(waiting)
        # Interrupt once the cell runs: a SIGINT before that can land where ipykernel ignores it.
        yield channels.wait_for(ws.of_type("stream", "iopub"))
        status, _, _ = yield self.client.request("POST", f"/api/kernels/{kernel_id}/interrupt")
        self.assertEqual(status, 204)
        messages = yield channels.wait_for(ws.finished(waiting))
        reply = reply_of(messages)
        self.assertEqual((reply["status"], reply.get("ename")), ("error", "KeyboardInterrupt"))

        status, _, restarted = yield self.client.request("POST", f"/api/kernels/{kernel_id}/restart")
        self.assertEqual(status, 200, restarted)
        self.assertEqual(restarted["id"], kernel_id)
        yield poll_until(lambda: not set(remote) & set(processes_of(kernel_id)), timeout=30)
        messages = yield channels.execute("import os; print(os.getpid())")
        pid = int(stdout(messages))
        self.assertNotIn(pid, remote, "the same WebSocket now reaches the new remote kernel")

        since = len(channels.messages)
        os.kill(pid, signal.SIGKILL)  # the remote kernel crashes: poll notices, kgd launches it again
        yield channels.wait_for(lambda m: m["channel"] == "iopub" and m["content"].get("execution_state") == "restarting", timeout=60, since=since)
        yield poll_until(lambda: b"restarted after dying" in self.daemon.log, timeout=60)
        messages = yield channels.execute("print('after a crash')")
        self.assertEqual(stdout(messages).strip(), "after a crash")

        status, _, _ = yield self.client.request("DELETE", f"/api/kernels/{kernel_id}")
        self.assertEqual(status, 204)
        yield poll_until(lambda: processes_of(kernel_id) == [], timeout=30)

    @defer.inlineCallbacks
    def test_unsafe_env_never_reaches_ssh_and_stop_ends_remote_kernels(self) -> None:
        """A KERNEL_USERNAME with shell syntax is a 400 before any SSH session; stopping kgd ends the remote kernels."""
        sessions = self.sshd.log.count("Accepted publickey")
        marker = os.path.join(self.root, "pwned")
        for value in (f'"; touch {marker}; "', f"$(touch {marker})", f"`touch {marker}`"):
            status, _, body = yield self.client.request(
                "POST", "/api/kernels", {"name": "ssh_python", "env": {"KERNEL_USERNAME": value}}
            )
            self.assertEqual(status, 400, body)
            self.assertIn("KERNEL_USERNAME", body["message"])
        self.assertFalse(os.path.exists(marker))
        self.assertEqual(self.sshd.log.count("Accepted publickey"), sessions, "no SSH session was opened")

        model = yield self.start_kernel()
        status, _, kernels = yield self.client.request("GET", "/api/kernels")
        self.assertEqual([k["id"] for k in kernels], [model["id"]])
        self.assertTrue(processes_of(model["id"]))
        yield self.daemon.stop()
        self.assertEqual(self.daemon.exit_code, 0)
        # The gateway has sent the kill over the provisioner's channel before it
        # exits; the remote side ends its processes on its own schedule.
        yield poll_until(lambda: processes_of(model["id"]) == [], timeout=30)


class RemoteKernelStoreTests(SshTestCase):
    """A kernel on an SSH host outlives the daemon that started it, through its provisioner's own info."""

    @defer.inlineCallbacks
    def test_remote_kernel_outlives_a_daemon_restart(self) -> None:
        """SIGTERM leaves the remote kernel running; the next kgd reloads its provisioner: same id, state intact, interrupt and DELETE work."""
        store = os.path.join(self.root, "store")
        yield self.start_daemon("--kernel-store", "file://" + store)
        model = yield self.start_kernel()
        kernel_id = model["id"]
        channels = yield ws.connect(self.daemon.ws_url, kernel_id, session_id="across")
        pid = int(stdout((yield channels.execute("import os; x = 6 * 7; print(os.getpid())"))))
        with open(os.path.join(store, f"{kernel_id}.json")) as f:
            record = json.load(f)
        self.assertEqual((record["provisioner"]["name"], record["process"]), ("distributed-provisioner", None))
        self.assertEqual(record["provisioner"]["info"]["assigned_host"], HOST)

        first = self.daemon
        yield first.stop(kernels_survive=True)
        self.assertEqual(first.exit_code, 0)
        self.assertEqual(channels.close_code, 1012)
        self.assertIn(pid, processes_of(kernel_id), "the remote kernel outlived the daemon")

        yield self.start_daemon("--kernel-store", "file://" + store)
        self.assertIn("adopted 1 of 1 recorded kernels", self.daemon.log.decode())
        status, _, listed = yield self.client.request("GET", "/api/kernels")
        self.assertEqual((status, [k["id"] for k in listed]), (200, [kernel_id]))
        channels = yield ws.connect(self.daemon.ws_url, kernel_id, session_id="across")
        self.addCleanup(channels.close)
        self.assertEqual(stdout((yield channels.execute("print(x, os.getpid())"))).split(), ["42", str(pid)])

        waiting = ws.execute_request("import threading; print('waiting', flush=True); threading.Event().wait()")
        channels.send(waiting)
        yield channels.wait_for(ws.of_type("stream", "iopub"))
        status, _, _ = yield self.client.request("POST", f"/api/kernels/{kernel_id}/interrupt")
        self.assertEqual(status, 204)
        reply = reply_of((yield channels.wait_for(ws.finished(waiting))))
        self.assertEqual(reply.get("ename"), "KeyboardInterrupt")

        status, _, _ = yield self.client.request("DELETE", f"/api/kernels/{kernel_id}")
        self.assertEqual(status, 204)
        yield poll_until(lambda: processes_of(kernel_id) == [], timeout=30)
        self.assertFalse(os.path.exists(os.path.join(store, f"{kernel_id}.json")))
