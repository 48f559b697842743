"""Provisioned kernels in the real daemon on the asyncio reactor (``twistd -r asyncio kgd``).

jupyter_client's own ``LocalProvisioner``, registered under a test name,
takes kgd's provisioner path end to end with a real ipykernel kernel: the
asyncio bridge, txzmq on the asyncio reactor, polling for the end, signals,
restart and shutdown.  Beside it: a kernelspec naming a provisioner that is
not installed, one whose provisioner cannot be imported, a client env value
with shell syntax, and a local kernel that keeps working through all that.
A second daemon on the default reactor warns at start-up and refuses the
provisioned kernelspec clearly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from twisted.internet import defer
from twisted.trial import unittest

from tests.integration.daemon import Client, Daemon, pid_alive, poll_until
from tests.integration import ws
from tests.integration.provisioning import provisioner_path, stdout, write_kernelspec

MODEL_KEYS = {"id", "name", "last_activity", "execution_state", "connections"}


class ProvisionedDaemonCase(unittest.TestCase):
    """A temp JUPYTER_PATH with provisioned kernelspecs and test provisioners on the daemon's path."""

    timeout = 120

    def setUp(self) -> None:
        self.root = tempfile.mkdtemp(prefix="kgd-prov-")
        self.addCleanup(shutil.rmtree, self.root, True)
        self.runtime = os.path.join(self.root, "runtime")
        jupyter = os.path.join(self.root, "jupyter")
        write_kernelspec(jupyter, "viaprov", "test-local-provisioner")
        write_kernelspec(jupyter, "ghost", "no-such-provisioner")
        write_kernelspec(jupyter, "broken", "broken-provisioner")
        entry_points = provisioner_path(
            os.path.join(self.root, "site"),
            {
                "test-local-provisioner": "jupyter_client.provisioning:LocalProvisioner",
                "broken-provisioner": "kgd_test_no_such_module:Provisioner",
            },
        )
        self.env = {"JUPYTER_PATH": jupyter, "PYTHONPATH": entry_points}

    def daemon(self, twistd_args: tuple[str, ...] = ()) -> Daemon:
        return Daemon(["--list-kernels", "--runtime-dir", self.runtime], env=self.env, twistd_args=twistd_args)


class AsyncioReactorTests(ProvisionedDaemonCase):
    """On the asyncio reactor, provisioned kernels have the lifecycle of local ones."""

    @defer.inlineCallbacks
    def test_provisioned_kernel_lifecycle(self) -> None:
        """Start, run code over the WebSocket, interrupt, restart, autorestart after a crash and delete a kernel launched by a provisioner; the API never shows its connection info."""
        daemon = self.daemon(("-r", "asyncio"))
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)
        self.assertIn(b"AsyncioSelectorReactor", daemon.log)
        self.assertNotIn(b"needs the asyncio reactor", daemon.log)

        status, _, model = yield client.request("POST", "/api/kernels", {"name": "viaprov"})
        self.assertEqual(status, 201, model)
        self.assertEqual(set(model), MODEL_KEYS)
        self.assertRegex(daemon.log.decode(), rf"kernel {model['id']} \(viaprov\) launched as pid \d+ by provisioner test-local-provisioner")
        connection_file = os.path.join(self.runtime, f"kernel-{model['id']}.json")
        key = _key(connection_file)
        for path in ("/api/kernels", f"/api/kernels/{model['id']}"):
            _, _, body = yield client.request("GET", path)
            self.assertNotIn(key, repr(body))
            self.assertNotIn("port", repr(body))

        channels = yield ws.connect(daemon.ws_url, model["id"], protocols=[ws.V1])
        self.addCleanup(channels.close)
        messages = yield channels.execute("import os; print(os.getpid(), 6 * 7)")
        first_pid = daemon.kernel_pids[-1]
        self.assertEqual(stdout(messages).split(), [str(first_pid), "42"])

        status, _, _ = yield client.request("POST", f"/api/kernels/{model['id']}/interrupt")
        self.assertEqual(status, 204)
        status, _, restarted = yield client.request("POST", f"/api/kernels/{model['id']}/restart")
        self.assertEqual(status, 200, restarted)
        self.assertEqual(restarted["id"], model["id"])
        self.assertFalse(pid_alive(first_pid), "the first kernel process ended on restart")
        self.assertEqual(_key(connection_file), key, "a restart keeps the key (and ports)")
        messages = yield channels.execute("print('after restart')")
        self.assertEqual(stdout(messages).strip(), "after restart")

        since = len(channels.messages)
        os.kill(daemon.kernel_pids[-1], signal.SIGKILL)  # a crash: the provisioner's poll notices, kgd restarts it
        yield channels.wait_for(lambda m: m["content"].get("execution_state") == "restarting", since=since)
        yield poll_until(lambda: b"restarted after dying" in daemon.log, timeout=30)
        self.assertEqual(len(daemon.kernel_pids), 3)
        messages = yield channels.execute("print('after a crash')")
        self.assertEqual(stdout(messages).strip(), "after a crash")

        status, _, _ = yield client.request("DELETE", f"/api/kernels/{model['id']}")
        self.assertEqual(status, 204)
        self.assertEqual([pid for pid in daemon.kernel_pids if pid_alive(pid)], [])
        self.assertFalse(os.path.exists(connection_file), "the connection file is removed")

    @defer.inlineCallbacks
    def test_unavailable_provisioners_fail_cleanly(self) -> None:
        """Missing or broken provisioners and unsafe env values are clear JSON errors that leave nothing behind; local kernels keep working."""
        daemon = self.daemon(("-r", "asyncio"))
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)
        self.assertRegex(daemon.log.decode(), r"Kernel ghost cannot be started: it needs the kernel provisioner no-such-provisioner")

        status, _, body = yield client.request("POST", "/api/kernels", {"name": "ghost"})
        self.assertEqual(status, 404, body)
        self.assertIn("no-such-provisioner, which is not installed", body["message"])

        status, _, body = yield client.request("POST", "/api/kernels", {"name": "broken"})
        self.assertEqual(status, 500, body)
        self.assertEqual(set(body), {"reason", "message"})
        self.assertIn("provisioner broken-provisioner is not available", body["message"])
        self.assertIn("kgd_test_no_such_module", body["message"])
        self.assertIn(b"provisioner broken-provisioner is not available", daemon.log)

        marker = os.path.join(self.root, "pwned")
        status, _, body = yield client.request(
            "POST", "/api/kernels", {"name": "viaprov", "env": {"KERNEL_USERNAME": f"$(touch {marker})"}}
        )
        self.assertEqual(status, 400, body)
        self.assertIn("KERNEL_USERNAME", body["message"])
        self.assertFalse(os.path.exists(marker))

        status, _, kernels = yield client.request("GET", "/api/kernels")
        self.assertEqual((status, kernels), (200, []))
        self.assertEqual(daemon.kernel_pids, [], "no kernel process was started")

        status, _, model = yield client.request("POST", "/api/kernels", {"name": "python3"})
        self.assertEqual(status, 201, model)
        self.assertRegex(daemon.log.decode(), rf"kernel {model['id']} \(python3\) launched as pid \d+\n")


class DefaultReactorTests(ProvisionedDaemonCase):
    """Without the asyncio reactor, kgd says so at start-up and refuses provisioned kernels clearly."""

    @defer.inlineCallbacks
    def test_warns_and_refuses(self) -> None:
        """A start-up warning names the kernelspec and the fix; starting it is a 500 saying the same; local kernels work."""
        daemon = self.daemon()
        yield daemon.start()
        self.addCleanup(daemon.stop)
        client = Client(daemon)
        self.assertRegex(daemon.log.decode(), r"kernelspec viaprov names the kernel provisioner test-local-provisioner, which needs the asyncio reactor")
        status, _, body = yield client.request("POST", "/api/kernels", {"name": "viaprov"})
        self.assertEqual(status, 500, body)
        self.assertIn("twistd -r asyncio kgd", body["message"])
        status, _, model = yield client.request("POST", "/api/kernels", {"name": "python3"})
        self.assertEqual(status, 201, model)
        _, _, kernels = yield client.request("GET", "/api/kernels")
        self.assertEqual([k["name"] for k in kernels], ["python3"])


def _key(connection_file: str) -> str:
    """The HMAC key in a kernel's connection file."""
    with open(connection_file) as f:
        return json.load(f)["key"]
