"""sd_notify: the datagrams kgd sends systemd, received on a socket the test binds."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial import unittest

from kgd.readiness import Readiness
from kgd.systemd import Notifier, NotifyService, message, socket_address


class Receiver:
    """A bound Unix datagram socket standing in for systemd's notify socket."""

    def __init__(self, testcase: unittest.TestCase, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        testcase.addCleanup(self.sock.close)
        if abstract:
            name = f"kgd-test-{os.getpid()}-{id(self)}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            # Unix socket paths are short (108 bytes): not below trial's deep temp dir.
            directory = tempfile.mkdtemp(prefix="kgd-notify-")
            testcase.addCleanup(shutil.rmtree, directory, True)
            self.address = os.path.join(directory, "notify")
            self.sock.bind(self.address)
        self.sock.setblocking(False)

    def messages(self) -> list[dict[str, str]]:
        """Every notification received so far, parsed into assignments."""
        received = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return received
            received.append(dict(line.split("=", 1) for line in data.decode().split("\n")))


class MessageTests(unittest.TestCase):
    """The wire format of one notification."""

    def test_assignments_one_per_line(self) -> None:
        """Keys are upper-cased KEY=value lines, in order."""
        self.assertEqual(message(ready="1", status="serving 2 kernels"), b"READY=1\nSTATUS=serving 2 kernels")

    def test_abstract_namespace(self) -> None:
        """``@name`` means the abstract socket ``\\0name``; a path stays a path."""
        self.assertEqual(socket_address("@kgd/notify"), "\0kgd/notify")
        self.assertEqual(socket_address("/run/systemd/notify"), "/run/systemd/notify")


class NotifierTests(unittest.TestCase):
    """Sending to NOTIFY_SOCKET, or nothing without it."""

    def test_sends_to_a_path(self) -> None:
        """A notification reaches a socket bound at a filesystem path."""
        receiver = Receiver(self)
        Notifier(receiver.address).notify(ready="1")
        self.assertEqual(receiver.messages(), [{"READY": "1"}])

    def test_sends_to_an_abstract_socket(self) -> None:
        """A notification reaches a socket in the abstract namespace (``@name``), as systemd uses."""
        receiver = Receiver(self, abstract=True)
        Notifier(receiver.address).notify(status="hello")
        self.assertEqual(receiver.messages(), [{"STATUS": "hello"}])

    def test_environment_variable_is_taken(self) -> None:
        """from_environment reads NOTIFY_SOCKET and removes it, so kernels never inherit it."""
        environ = {"NOTIFY_SOCKET": "@x", "PATH": "/bin"}
        notifier = Notifier.from_environment(environ)
        self.assertEqual(notifier.address, "\0x")
        self.assertEqual(environ, {"PATH": "/bin"})

    def test_no_socket_is_a_no_op(self) -> None:
        """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
        notifier = Notifier.from_environment({})
        self.assertFalse(notifier.enabled)
        notifier.notify(ready="1")

    def test_unreachable_socket_is_logged_not_raised(self) -> None:
        """A notify socket that went away is logged once; kgd keeps running."""
        notifier = Notifier(os.path.join(self.mktemp(), "absent"))
        with capturedLogs() as events:
            notifier.notify(ready="1")
            notifier.notify(status="again")
        self.assertEqual(len(events), 1)
        self.assertIn("could not notify systemd", events[0]["log_format"])


class NotifyServiceTests(unittest.TestCase):
    """READY=1 after the listeners and every readiness condition, STATUS updates, STOPPING=1 on stop."""

    def setUp(self) -> None:
        self.receiver = Receiver(self)
        self.clock = Clock()
        self.readiness = Readiness()
        self.kernels = 0
        self.service = NotifyService(
            Notifier(self.receiver.address), self.readiness, lambda: self.kernels, self.clock, status_interval=5
        )

    def test_ready_once_listening(self) -> None:
        """With only the listeners to wait for, starting the service (after them) sends READY=1."""
        self.readiness.expect("listening")
        self.service.startService()
        self.assertEqual(self.receiver.messages(), [{"READY": "1", "STATUS": "serving 0 kernels"}])
        self.service.stopService()

    def test_waits_for_prespawn(self) -> None:
        """A pending prespawn pool holds READY=1 back; a STATUS line says what it waits for."""
        self.readiness.expect("listening")
        self.readiness.expect("prespawn")
        self.service.startService()
        self.assertEqual(self.receiver.messages(), [{"STATUS": "starting: waiting for prespawn"}])
        self.kernels = 2
        self.readiness.done("prespawn")
        self.assertEqual(self.receiver.messages(), [{"READY": "1", "STATUS": "serving 2 kernels"}])
        self.service.stopService()

    def test_status_follows_kernel_count(self) -> None:
        """While serving, STATUS is sent again when the number of kernels changed, and only then."""
        self.service.startService()
        self.receiver.messages()
        self.clock.advance(5)
        self.assertEqual(self.receiver.messages(), [])
        self.kernels = 1
        self.clock.advance(5)
        self.assertEqual(self.receiver.messages(), [{"STATUS": "serving 1 kernel"}])
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopping(self) -> None:
        """Stopping the service sends STOPPING=1 with a STATUS line."""
        self.service.startService()
        self.receiver.messages()
        self.service.stopService()
        self.assertEqual(self.receiver.messages(), [{"STOPPING": "1", "STATUS": "stopping: shutting kernels down"}])

    def test_stopped_before_ready(self) -> None:
        """A daemon stopped before it became ready never claims READY=1."""
        self.readiness.expect("prespawn")
        self.service.startService()
        self.service.stopService()
        self.readiness.done("prespawn")
        sent = self.receiver.messages()
        self.assertNotIn("READY", {key for m in sent for key in m})
