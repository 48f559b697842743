"""TxZmqSockets against real ZeroMQ sockets on loopback: a flooding socket yields the reactor."""

from __future__ import annotations

import time
from typing import Any

import zmq
from twisted.internet import defer, reactor
from twisted.trial import unittest

from kgd.kernels.zmq_sockets import IOPUB_HWM, READS_PER_TURN, ZERO_COPY_MIN, TxZmqSockets
from tests.integration.daemon import poll_until


class ReadsPerTurnTests(unittest.TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.sockets = TxZmqSockets()
        self.addCleanup(self.sockets.close)
        self.context = zmq.Context()
        self.addCleanup(self.context.term)

    def kernel_side(self, kind: int) -> tuple[zmq.Socket, str]:
        socket = self.context.socket(kind)
        socket.setsockopt(zmq.LINGER, 0)
        port = socket.bind_to_random_port("tcp://127.0.0.1")
        self.addCleanup(socket.close)
        return socket, f"tcp://127.0.0.1:{port}"

    @defer.inlineCallbacks
    def test_a_flooding_socket_reads_a_bounded_batch_per_turn(self) -> None:
        """Each turn a socket reads at most READS_PER_TURN messages and schedules the next turn while more wait; order is kept."""
        router, url = self.kernel_side(zmq.ROUTER)
        received: list[bytes] = []
        dealer = self.sockets.dealer(url, lambda frames: received.append(frames[-1]), identity=b"gw")
        dealer.send([b"hello"])
        identity = yield poll_until(lambda: self._identity_from(router), timeout=30)
        connection = dealer._connection
        reactor.removeReader(connection)  # the test hands out the turns
        for n in range(1000):
            router.send_multipart([identity, str(n).encode()])
        batches = []
        deadline = time.monotonic() + 30
        while len(received) < 1000 and time.monotonic() < deadline:
            connection.socket.poll(100)
            before = len(received)
            connection.doRead()
            batches.append(len(received) - before)
            scheduled = connection.read_scheduled
            if scheduled is not None:
                scheduled.cancel()
                connection.read_scheduled = None
        self.assertEqual([int(x) for x in received], list(range(1000)))
        self.assertLessEqual(max(batches), READS_PER_TURN)
        self.assertIn(READS_PER_TURN, batches)

    def _identity_from(self, router: zmq.Socket) -> Any:
        try:
            identity, _ = router.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        return identity

    def test_iopub_queue_is_bounded(self) -> None:
        """An iopub SUB socket queues at most IOPUB_HWM unread messages (txzmq's default would queue without limit)."""
        _, url = self.kernel_side(zmq.PUB)
        subscriber = self.sockets.subscriber(url, lambda frames: None)
        self.assertEqual(subscriber._connection.socket.get(zmq.RCVHWM), IOPUB_HWM)

    @defer.inlineCallbacks
    def test_large_frames_are_not_copied(self) -> None:
        """Frames from ZERO_COPY_MIN bytes on arrive as read-only views of ZeroMQ's message, smaller ones as bytes."""
        publisher, url = self.kernel_side(zmq.PUB)
        received: list[list[Any]] = []
        self.sockets.subscriber(url, received.append)
        large = b"x" * ZERO_COPY_MIN
        small = b"y" * (ZERO_COPY_MIN - 1)

        def publish() -> bool:
            publisher.send_multipart([small, large])
            return bool(received)

        yield poll_until(publish, timeout=30)
        first, second = received[0]
        self.assertIs(type(first), bytes)
        self.assertEqual(first, small)
        self.assertIsInstance(second, memoryview)
        self.assertTrue(second.readonly)
        self.assertEqual(second, large)
