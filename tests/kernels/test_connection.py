"""Tests for kgd.kernels.connection: talking to a kernel given only its connection info.

A fake kernel process serves fake sockets (real framing and signing,
delivery on a Clock); no supervisor or launcher is involved.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels import messages
from kgd.kernels.activity import KernelActivity
from kgd.kernels import connection as connection_module
from kgd.kernels.connection import HandshakeTimedOut, KernelConnection, KernelGone
from kgd.kernels.zmq_sockets import channel_url
from tests.kernels.fakes import FakeRunningKernel, FakeSockets
from tests.kernels.test_supervisor import ADOPTED_INFO


class ConnectionTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sockets = FakeSockets(self.clock)
        self.kernel = FakeRunningKernel(self.sockets, dict(ADOPTED_INFO), 7000, self.sockets.events)
        self.activity = KernelActivity(self.clock)
        self.connection = KernelConnection("kid-1", self.sockets, self.activity, ADOPTED_INFO)

    def ready(self) -> None:
        d = self.connection.handshake(self.clock, 10, 1)
        self.clock.advance(0)
        self.successResultOf(d)


class HandshakeTests(ConnectionTestCase):
    def test_ready_after_reply_and_iopub(self) -> None:
        """Built from connection info alone, the connection completes the handshake and the kernel shows idle."""
        d = self.connection.handshake(self.clock, 10, 1)
        self.assertTrue(self.connection.handshaking)
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertFalse(self.connection.handshaking)
        self.assertEqual(self.activity.execution_state, "idle")
        self.assertEqual([c for c, _ in self.kernel.messages_of("kernel_info_request")], ["shell"])

    def test_silent_kernel_nudged_then_timed_out(self) -> None:
        """A kernel that never answers is asked again every nudge interval, then the handshake fails."""
        self.kernel.answers_kernel_info = False
        d = self.connection.handshake(self.clock, 3, 1)
        for _ in range(3):
            self.clock.advance(1)
        self.failureResultOf(d, HandshakeTimedOut)
        self.assertEqual(len(self.kernel.messages_of("kernel_info_request")), 3)
        self.assertEqual(self.activity.execution_state, "starting")


class IopubTests(ConnectionTestCase):
    def test_fan_out_to_every_listener(self) -> None:
        """Each iopub message reaches every listener; a removed listener gets nothing more."""
        self.ready()
        first: list[str] = []
        second: list[str] = []
        self.connection.add_iopub_listener(lambda m: first.append(m.msg_type))
        self.connection.add_iopub_listener(second.append)
        self.kernel.publish("stream", {"name": "stdout", "text": "hi"})
        self.clock.advance(0)
        self.connection.remove_iopub_listener(second.append)
        self.kernel.publish("stream", {"name": "stdout", "text": "again"})
        self.clock.advance(0)
        self.assertEqual(first, ["stream", "stream"])
        self.assertEqual([m.msg_type for m in second], ["stream"])


    def test_iopub_welcome_completes_the_handshake_and_goes_no_further(self) -> None:
        """ipykernel 7's ``iopub_welcome`` proves iopub flows, but reaches no listener and is no activity.

        jupyter-js-services (the kernel_gateway_demos Node client) logs every
        unknown iopub type as an invalid message.
        """
        self.kernel.publishes_status = False
        d = self.connection.handshake(self.clock, 10, 1)
        self.clock.advance(0)
        self.assertNoResult(d)
        self.kernel.publish("iopub_welcome", {"subscription": ""})
        self.clock.advance(0)
        self.successResultOf(d)
        seen: list[str] = []
        self.connection.add_iopub_listener(lambda m: seen.append(m.msg_type))
        self.clock.advance(60)
        before = self.activity.last_activity
        self.kernel.publish("iopub_welcome", {"subscription": ""})
        self.clock.advance(0)
        self.assertEqual(self.activity.last_activity, before)
        execute = messages.new_message("execute_request", {"code": "print('hi')"}, session="s")
        self.kernel.publish("stream", {"name": "stdout", "text": "hi"}, parent=execute)
        self.clock.advance(0)
        self.assertEqual(seen, ["stream"])
        self.assertGreater(self.activity.last_activity, before)


class RequestTests(ConnectionTestCase):
    def test_each_request_gets_its_own_reply(self) -> None:
        """The gateway's own requests fire with the reply whose parent is that request."""
        self.ready()
        interrupt = self.connection.request("control", "interrupt_request", {})
        info = self.connection.request("shell", "kernel_info_request", {})
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(interrupt).msg_type, "interrupt_reply")
        self.assertEqual(self.successResultOf(info).msg_type, "kernel_info_reply")

    def test_close_closes_every_socket(self) -> None:
        """Closing the connection closes its own and its clients' sockets, and no client can attach afterwards."""
        self.ready()
        client = self.connection.client(lambda c, m: None)
        self.connection.close()
        self.assertTrue(client.closed)
        self.assertTrue(all(s.closed for s in self.sockets.opened))
        self.assertRaises(KernelGone, self.connection.client, lambda c, m: None)


class ClientTests(ConnectionTestCase):
    def test_clients_share_the_kernels_sockets(self) -> None:
        """Any number of clients use the kernel's one iopub, shell, control and stdin sockets, under one identity."""
        self.ready()
        before = list(self.sockets.opened)
        for _ in range(50):
            self.connection.client(lambda c, m: None)
        self.assertEqual(self.sockets.opened, before)
        dealers = [s for s in before if s.kind == "dealer"]
        self.assertEqual(
            sorted(s.url for s in dealers), sorted(channel_url(ADOPTED_INFO, c) for c in ("shell", "control", "stdin"))
        )
        self.assertEqual(len({s.identity for s in dealers}), 1)

    def test_replies_go_to_the_client_that_asked(self) -> None:
        """A reply reaches the client whose socket sent the request, not another client."""
        self.ready()
        asker: list[str] = []
        other: list[str] = []
        client = self.connection.client(lambda channel, m: asker.append(m.msg_type))
        self.connection.client(lambda channel, m: other.append(m.msg_type))
        client.send("shell", messages.new_message("execute_request", {"code": "1"}, session="s"))
        self.clock.advance(0)
        self.assertEqual(asker, ["execute_reply"])
        self.assertEqual(other, [])

    def test_input_request_goes_to_the_client_that_executed(self) -> None:
        """The kernel's input_request on stdin reaches the client whose execute_request asked for input."""
        self.ready()
        asker: list[tuple[str, str]] = []
        other: list[tuple[str, str]] = []
        self.connection.client(lambda channel, m: other.append((channel, m.msg_type)))
        client = self.connection.client(lambda channel, m: asker.append((channel, m.msg_type)))
        client.send("shell", messages.new_message("execute_request", {"code": "input()"}, session="s"))
        self.clock.advance(0)
        self.assertEqual(asker, [("stdin", "input_request")])
        self.assertEqual(other, [])

    def test_reply_to_a_client_that_left_reaches_nobody(self) -> None:
        """A client that closes before its reply: the reply is dropped, not given to another client, and its route goes."""
        self.ready()
        other: list[str] = []
        self.connection.client(lambda channel, m: other.append(m.msg_type))
        leaving = self.connection.client(lambda channel, m: self.fail("a closed client received a message"))
        leaving.send("shell", messages.new_message("execute_request", {"code": "1"}, session="s"))
        leaving.close()
        self.clock.advance(0)
        self.assertEqual(other, [])
        self.assertEqual(leaving.pending, set())

    def test_a_reused_msg_id_keeps_its_first_owner(self) -> None:
        """A second client sending a pending request's msg_id does not get the first client's reply."""
        self.ready()
        first: list[str] = []
        second: list[str] = []
        a = self.connection.client(lambda channel, m: first.append(m.msg_type))
        b = self.connection.client(lambda channel, m: second.append(m.msg_type))
        request = messages.new_message("execute_request", {"code": "1"}, session="s")
        a.send("shell", request)
        b.send("shell", request)
        self.clock.advance(0)
        self.assertEqual(first, ["execute_reply"])
        self.assertEqual(second, [])

    def test_unanswered_requests_are_bounded(self) -> None:
        """Requests a kernel never answers are remembered up to a bound, oldest forgotten first; answered ones not at all."""
        self.patch(connection_module, "PENDING_LIMIT", 20)
        self.ready()
        client = self.connection.client(lambda channel, m: None)
        sent = [messages.new_message("history_request", {}, session="s") for _ in range(30)]
        for message in sent:
            client.send("shell", message)
        self.assertEqual(client.pending, {m.msg_id for m in sent[10:]})
        client.send("shell", messages.new_message("comm_msg", {}, session="s"))  # expects no reply
        self.assertEqual(len(client.pending), 20)
        answered = self.connection.client(lambda channel, m: None)
        answered.send("shell", messages.new_message("execute_request", {"code": "1"}, session="s"))
        self.clock.advance(0)
        self.assertEqual(answered.pending, set())
