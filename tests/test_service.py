"""Tests for kgd.service.makeService: the daemon's service tree, on a memory reactor.

Nothing listens for real and no kernel process starts: the reactor is a
MemoryReactorClock whose listening ports record when they stop, and the
launcher and sockets are the in-memory fakes of ``tests.kernels.fakes``.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from types import SimpleNamespace

from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

import kgd
from kgd.kernels.kernels import Kernels
from kgd.options import default_config
from kgd.service import RuntimeDirectory, makeService, personality_settings
from kgd.web.site import GatewaySite
from tests.integration.daemon import RESOURCES
from tests.kernels.fakes import FakeLauncher, FakeSockets, temporary_specs, write_kernelspec


class RecordingPort:
    """A listening port that notes when it stops listening."""

    def __init__(self, port, events: list[str], name: str) -> None:
        self._port = port
        self._events = events
        self._name = name

    def stopListening(self):
        self._events.append(f"{self._name} stopped")
        return self._port.stopListening()

    def getHost(self):
        return self._port.getHost()


class RecordingReactor(MemoryReactorClock):
    """A memory reactor whose TCP ports record stopListening in ``events``."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def listenTCP(self, port, factory, backlog=50, interface=""):
        listening = super().listenTCP(port, factory, backlog, interface)
        return RecordingPort(listening, self.events, f"listener {interface}:{port}")


class MakeServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[str] = []
        self.reactor = RecordingReactor(self.events)
        self.sockets = FakeSockets(self.reactor, self.events)
        self.launcher = FakeLauncher(self.sockets)
        kernels_dir = self.mktemp()
        write_kernelspec(kernels_dir, "python3")
        self.specs = temporary_specs(kernels_dir)

    def make(self, **changes):
        config = default_config(**changes)
        top = makeService(config, self.reactor, launcher=self.launcher, sockets=self.sockets, specs=self.specs)
        return top

    def stop(self, top) -> None:
        d = top.stopService()
        self.reactor.advance(30)
        self.successResultOf(d)

    def child(self, top, kind):
        (found,) = [s for s in top if isinstance(s, kind)]
        return found

    def test_one_listener_per_listen_description(self) -> None:
        """Each --listen endpoint description gets its own listener, on its port and interface, serving the site."""
        top = self.make(listen=["tcp:8899:interface=127.0.0.1", r"tcp:0:interface=\:\:1"])
        self.assertEqual(self.reactor.tcpServers, [])
        top.startService()
        self.addCleanup(self.stop, top)
        servers = [(port, interface) for port, _, _, interface in self.reactor.tcpServers]
        self.assertEqual(servers, [(8899, "127.0.0.1"), (0, "::1")])
        factories = {id(factory) for _, factory, _, _ in self.reactor.tcpServers}
        self.assertEqual(len(factories), 1, "every listener serves the same site")
        self.assertIsInstance(self.reactor.tcpServers[0][1], GatewaySite)

    def test_site_serves_the_api(self) -> None:
        """The site behind the listeners answers the API at the base URL."""
        top = self.make(base_url="/gw/")
        top.startService()
        self.addCleanup(self.stop, top)
        site = self.reactor.tcpServers[0][1]
        treq = StubTreq(site.resource)
        response = self.successResultOf(treq.get("http://127.0.0.1/gw/api"))
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(treq.json_content(response)), {"version": kgd.__version__})

    def test_stop_order(self) -> None:
        """On stop the listeners close first, then every kernel is shut down, then the ZeroMQ context closes."""
        top = self.make(listen=["tcp:8899:interface=127.0.0.1"])
        top.startService()
        kernels = self.child(top, Kernels)
        started = kernels.start_kernel()
        self.reactor.advance(0)
        self.successResultOf(started)
        self.events.clear()
        self.stop(top)
        pid = self.launcher.kernels[0].pid
        self.assertEqual(
            self.events, ["listener 127.0.0.1:8899 stopped", f"kernel {pid} ended", "sockets closed"]
        )
        self.assertEqual(self.launcher.alive(), [])

    def test_private_runtime_directory(self) -> None:
        """Without --runtime-dir, connection files go to a fresh 0700 directory that is removed on stop."""
        top = self.make()
        runtime = self.child(top, RuntimeDirectory)
        self.assertTrue(os.path.isdir(runtime.path))
        self.assertEqual(stat.S_IMODE(os.stat(runtime.path).st_mode), 0o700)
        top.startService()
        self.stop(top)
        self.assertFalse(os.path.exists(runtime.path))

    def test_given_runtime_directory(self) -> None:
        """A --runtime-dir that does not exist is created 0700, and kept on stop."""
        path = os.path.join(self.mktemp(), "runtime")
        top = self.make(runtime_dir=path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700)
        top.startService()
        self.stop(top)
        self.assertTrue(os.path.isdir(path))

    def test_lean_daemon(self) -> None:
        """The jupyter-websocket daemon without a seed notebook loads neither IPython nor nbformat (tens of MiB of RSS)."""
        code = (
            "import sys\n"
            "from kgd.options import default_config\n"
            "from kgd.service import makeService\n"
            "makeService(default_config(listen=['tcp:0:interface=127.0.0.1'])).getServiceNamed\n"
            "print(sorted(m for m in ('IPython', 'nbformat') if m in sys.modules))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        self.assertEqual(out.stdout.strip(), "[]", out.stderr)

    def test_seeding_left_to_a_personality_that_seeds(self) -> None:
        """--seed-uri seeds every kernel under jupyter-websocket, but not under notebook-http, whose pool seeds its own."""
        top = self.make(seed_uri=os.path.join(RESOURCES, "zen.ipynb"))
        self.assertEqual(len(self.child(top, Kernels).prepare_hooks), 1)
        top = self.make(api=["notebook-http"], seed_uri=os.path.join(RESOURCES, "kernel_api.ipynb"))
        self.assertEqual(self.child(top, Kernels).prepare_hooks, [])

    def test_personality_settings_by_name(self) -> None:
        """A personality's settings are filled by field name; a field naming no setting stops the daemon at startup."""

        @dataclasses.dataclass(frozen=True)
        class Wanted:
            list_kernels: bool
            max_kernels: int | None

        @dataclasses.dataclass(frozen=True)
        class Misspelt:
            max_kernel: int | None

        settings = default_config(max_kernels=4)
        filled = personality_settings(SimpleNamespace(name="p", settings_type=Wanted), settings)
        self.assertEqual(filled, Wanted(list_kernels=False, max_kernels=4))
        error = self.assertRaises(
            TypeError, personality_settings, SimpleNamespace(name="p", settings_type=Misspelt), settings
        )
        self.assertIn("max_kernel", str(error))

    def test_kernels_configured(self) -> None:
        """The Kernels service gets the configured limit, forced name and timeouts."""
        top = self.make(max_kernels=3, force_kernel_name="python3", kernel_start_timeout=7.0)
        kernels = self.child(top, Kernels)
        self.assertEqual(kernels.max_kernels, 3)
        self.assertEqual(kernels.force_name, "python3")
        self.assertEqual(kernels._start_timeout, 7.0)
