"""ZeroMQ sockets to kernels, on the Twisted reactor through txzmq.

This is the only module that imports txzmq.  txzmq binds itself to the global
reactor when imported, so the import happens when the first socket factory
is made (after twistd has installed the reactor it was asked for, asyncio
included), and everything above this module talks to ``IZmqSockets`` so that
tests can hand it a fake.

A socket reads at most ``READS_PER_TURN`` messages each time the reactor
hands it the turn, then yields and goes on in the next turn: txzmq's own
reader drains a socket completely, so one kernel flooding output would keep
every other kernel's replies (and every client's frames) waiting behind it.

Frames of at least ``ZERO_COPY_MIN`` bytes are handed up as read-only
memoryviews of ZeroMQ's own message (``copy=False``), not copied into
bytes: a cell's output arrives as one message of megabytes, which the relay
verifies and frames without needing its own copy.  Smaller frames are bytes
(a copy is cheaper than a ``zmq.Frame``, and headers are parsed anyway).

The heartbeat channel is not opened: like jupyter_client's restarter, kgd
learns that a kernel died from its process (or its provisioner's poll), which
is exact, where a missed heartbeat under load is a guess.
"""

from __future__ import annotations

from typing import Any, Callable

from zope.interface import implementer

from kgd.interfaces import IZmqSocket, IZmqSockets

#: A received frame: bytes, or a read-only view of ZeroMQ's message if it is large.
Frame = bytes | memoryview
Receiver = Callable[[list[Frame]], None]

#: Messages one socket reads before other sockets and connections get the reactor.
READS_PER_TURN = 64
#: Messages an iopub SUB socket queues while kgd has not read them (ZeroMQ's own
#: default; txzmq's is 0, no limit).  Past it the kernel's PUB drops output for
#: kgd, as it does for any Jupyter client that falls that far behind.
IOPUB_HWM = 1000
#: Frames from this size on are not copied out of ZeroMQ (pyzmq's own COPY_THRESHOLD for sends).
ZERO_COPY_MIN = 64 * 1024


def channel_url(connection_info: dict[str, Any], channel: str) -> str:
    """The ZeroMQ URL of one channel (shell, control, stdin or iopub) of a kernel."""
    port = connection_info[f"{channel}_port"]
    transport = connection_info.get("transport", "tcp")
    ip = connection_info.get("ip", "127.0.0.1")
    if transport == "ipc":
        return f"ipc://{ip}-{port}"
    host = f"[{ip}]" if ":" in ip else ip
    return f"{transport}://{host}:{port}"


@implementer(IZmqSocket)
class _Socket:
    """A txzmq connection seen as a plain socket with send and close."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def send(self, frames: list[bytes]) -> None:
        if self._connection is not None:
            self._connection.send(frames)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.socket is not None:
            connection.shutdown()


@implementer(IZmqSockets)
class TxZmqSockets:
    """Makes kernel sockets from one ZeroMQ context, closed when the daemon stops."""

    def __init__(self, max_sockets: int | None = None) -> None:
        """``max_sockets``: the context's socket limit (ZeroMQ's default is 1023), capped at what libzmq allows."""
        import txzmq
        from zmq import constants

        self._txzmq = txzmq
        self._constants = constants
        self._factory = txzmq.ZmqFactory()
        self._factory.lingerPeriod = 0
        if max_sockets is not None:
            context = self._factory.context
            context.set(constants.MAX_SOCKETS, min(max_sockets, context.get(constants.SOCKET_LIMIT)))
        self._classes = self._make_classes()

    def _make_classes(self) -> dict[str, type]:
        txzmq = self._txzmq
        constants = self._constants
        from twisted.internet import reactor
        from zmq import ZMQError

        class Dealer(txzmq.ZmqConnection):
            socketType = constants.DEALER

            def __init__(self, factory: Any, endpoint: Any, receive: Receiver, identity: bytes | None = None) -> None:
                self._receive = receive
                super().__init__(factory, endpoint, identity=identity)

            def messageReceived(self, message: list[Frame]) -> None:
                self._receive(message)

            def _readMultipart(self) -> list[Frame]:
                """One whole message, large frames as views (txzmq's copies every frame into bytes).

                ``ZMQError`` (EAGAIN) when none waits; frames read so far are
                kept for the next call, as txzmq does.
                """
                while True:
                    frame = self.socket.recv(constants.NOBLOCK, copy=False)
                    self.recv_parts.append(frame.buffer.toreadonly() if len(frame) >= ZERO_COPY_MIN else frame.bytes)
                    if not frame.more:
                        message, self.recv_parts = self.recv_parts, []
                        return message

            def doRead(self) -> None:
                """Read up to ``READS_PER_TURN`` messages; if more wait, read on in the next reactor turn.

                ZeroMQ's descriptor signals edge-triggered, so the reactor
                would not call again for messages already queued: the
                rest is scheduled here (txzmq's ``read_scheduled``, which
                its ``send`` and ``shutdown`` also use).
                """
                if self.read_scheduled is not None:
                    if not self.read_scheduled.called:
                        self.read_scheduled.cancel()
                    self.read_scheduled = None
                for _ in range(READS_PER_TURN):
                    if self.factory is None or not self.socket.get(constants.EVENTS) & constants.POLLIN:
                        return
                    try:
                        message = self._readMultipart()
                    except ZMQError as error:
                        if error.errno == constants.EAGAIN:
                            continue
                        raise
                    self.messageReceived(message)
                if self.factory is not None:
                    self.read_scheduled = reactor.callLater(0, self.doRead)

        class Subscriber(Dealer):
            socketType = constants.SUB
            highWaterMark = IOPUB_HWM  # set before connecting, as ZeroMQ requires

            def __init__(self, factory: Any, endpoint: Any, receive: Receiver) -> None:
                super().__init__(factory, endpoint, receive)
                self.socket.setsockopt(constants.SUBSCRIBE, b"")

        return {"dealer": Dealer, "subscriber": Subscriber}

    def _open(self, kind: str, url: str, receive: Receiver, identity: bytes | None = None) -> IZmqSocket:
        endpoint = self._txzmq.ZmqEndpoint(self._txzmq.ZmqEndpointType.connect, url)
        if identity is None:
            return _Socket(self._classes[kind](self._factory, endpoint, receive))
        return _Socket(self._classes[kind](self._factory, endpoint, receive, identity))

    def dealer(self, url: str, receive: Receiver, identity: bytes | None = None) -> IZmqSocket:
        return self._open("dealer", url, receive, identity)

    def subscriber(self, url: str, receive: Receiver) -> IZmqSocket:
        return self._open("subscriber", url, receive)

    def close(self) -> None:
        """Close every socket and the ZeroMQ context."""
        if self._factory.context is not None:
            self._factory.shutdown()
