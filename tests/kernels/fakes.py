"""In-memory stand-ins for a kernel process and its ZeroMQ sockets.

``FakeLauncher`` (an ``IKernelLauncher``) hands out ``FakeRunningKernel``
objects (``IRunningKernel``) and ``FakeSockets`` (``IZmqSockets``) connects
sockets to them by URL.  The fake "kernel" speaks the real wire format
through ``kgd.kernels.messages``: it verifies the signature of what it is
sent, answers ``kernel_info_request`` with a signed ``kernel_info_reply``
between iopub ``busy`` and ``idle``, answers shutdown and interrupt
requests on control, and ends when told to or when signalled.

Every delivery is scheduled on the test's ``task.Clock`` with a zero delay,
never done inside ``send``: ZeroMQ never answers synchronously either, and
``clock.advance(0)`` runs a whole exchange.  Tests drive time, so nothing
here sleeps.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from typing import Any, Callable

from jupyter_client.kernelspec import KernelSpecManager
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer

from kgd.interfaces import IKernelLauncher, IRunningKernel, IZmqSocket, IZmqSockets
from kgd.kernels import messages
from kgd.kernels.records import LocalProcess
from kgd.kernels.specs import KernelSpecs
from kgd.kernels.zmq_sockets import channel_url

CHANNELS = ("shell", "control", "stdin", "iopub", "hb")
#: The host fake kernel processes run on.
FAKE_HOST = "fakehost"

KERNEL_INFO_CONTENT = {
    "status": "ok",
    "protocol_version": "5.3",
    "implementation": "fake",
    "implementation_version": "0",
    "language_info": {"name": "python"},
    "banner": "",
}


@implementer(IZmqSocket)
class FakeSocket:
    """One socket: what is sent goes to the kernel serving its URL."""

    def __init__(self, sockets: "FakeSockets", kind: str, url: str, receive: Callable[[list[bytes]], None]) -> None:
        self.sockets = sockets
        self.kind = kind
        self.url = url
        self.receive = receive
        self.sent: list[list[bytes]] = []
        self.identity: bytes | None = None
        self.closed = False

    def send(self, frames: list[bytes]) -> None:
        if self.closed:
            raise AssertionError(f"send on a closed socket to {self.url}")
        self.sent.append(list(frames))
        self.sockets.route(self, list(frames))

    def close(self) -> None:
        self.closed = True

    def deliver(self, frames: list[bytes]) -> None:
        """Schedule ``frames`` for this socket's receiver, unless it is closed by then."""

        def arrive() -> None:
            if not self.closed:
                self.receive(frames)

        self.sockets.clock.callLater(0, arrive)


@implementer(IZmqSockets)
class FakeSockets:
    """Sockets connected by URL to whichever fake kernel serves that URL now."""

    def __init__(self, clock: Clock, events: list[str] | None = None) -> None:
        self.clock = clock
        self.opened: list[FakeSocket] = []
        self._served: dict[str, tuple["FakeRunningKernel", str]] = {}
        self.events = events if events is not None else []
        self.closed = False

    def _open(self, kind: str, url: str, receive: Callable[[list[bytes]], None]) -> FakeSocket:
        socket = FakeSocket(self, kind, url, receive)
        self.opened.append(socket)
        return socket

    def dealer(self, url: str, receive: Callable[[list[bytes]], None], identity: bytes | None = None) -> FakeSocket:
        socket = self._open("dealer", url, receive)
        socket.identity = identity
        return socket

    def subscriber(self, url: str, receive: Callable[[list[bytes]], None]) -> FakeSocket:
        return self._open("subscriber", url, receive)


    def close(self) -> None:
        """Close the (pretend) ZeroMQ context, as ``TxZmqSockets.close`` does."""
        self.closed = True
        self.events.append("sockets closed")

    # -- the kernel side -----------------------------------------------------

    def serve(self, kernel: "FakeRunningKernel") -> None:
        for channel in CHANNELS:
            self._served[channel_url(kernel.connection_info, channel)] = (kernel, channel)

    def unserve(self, kernel: "FakeRunningKernel") -> None:
        for url, (served, _) in list(self._served.items()):
            if served is kernel:
                del self._served[url]

    def route(self, socket: FakeSocket, frames: list[bytes]) -> None:
        served = self._served.get(socket.url)
        if served is not None:
            kernel, channel = served
            self.clock.callLater(0, kernel.received, channel, frames, socket)

    def peer(self, socket: FakeSocket, url: str) -> FakeSocket:
        """The open DEALER at ``url`` with ``socket``'s routing identity (where a ROUTER would send to that identity)."""
        return next(s for s in self.opened if s.kind == "dealer" and s.url == url and s.identity == socket.identity and not s.closed)

    def subscribers(self, kernel: "FakeRunningKernel") -> list[FakeSocket]:
        url = channel_url(kernel.connection_info, "iopub")
        return [s for s in self.opened if s.kind == "subscriber" and s.url == url and not s.closed]


@implementer(IRunningKernel)
class FakeRunningKernel:
    """A pretend kernel process that answers over FakeSockets.

    Behaviour switches (set through ``FakeLauncher.behaviour``):
    ``answers_kernel_info``, ``publishes_status``, ``exits_on_shutdown_request``
    and ``ends_on`` (the signals that end it; SIGKILL always does).
    """

    answers_kernel_info = True
    publishes_status = True
    exits_on_shutdown_request = True
    ends_on = frozenset({signal.SIGTERM, signal.SIGKILL})

    def __init__(
        self, sockets: FakeSockets, connection_info: dict[str, Any], pid: int, events: list[str], **behaviour: Any
    ) -> None:
        for name, value in behaviour.items():
            if not hasattr(type(self), name):
                raise TypeError(f"unknown behaviour {name}")
            setattr(self, name, value)
        self.sockets = sockets
        self.connection_info = connection_info
        self.pid = pid
        #: Who the process is, as a kernel record keeps it (a start time derived from the pid).
        self.process = LocalProcess(pid, pid, 100_000 + pid, FAKE_HOST)
        self.events = events
        self.signer = messages.Signer(connection_info["key"].encode())
        self.session = f"fake-kernel-{pid}"
        self.received_messages: list[tuple[str, messages.RawMessage]] = []
        self.rejected: list[tuple[str, list[bytes]]] = []
        self.signals: list[int] = []
        self.cleanups = 0
        self.shutdowns_requested: list[bool] = []
        self.ended = False
        self.exit_code: int | None = None
        self._waiters: list[defer.Deferred[int | None]] = []
        sockets.serve(self)

    # -- IRunningKernel ------------------------------------------------------

    def whenEnded(self) -> defer.Deferred[int | None]:
        if self.ended:
            return defer.succeed(self.exit_code)
        waiter: defer.Deferred[int | None] = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def signal(self, signum: int) -> None:
        if self.ended:
            return
        self.signals.append(signum)
        if signum in self.ends_on or signum == signal.SIGKILL:
            self.end(None)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def shutdown_requested(self, restart: bool) -> None:
        self.shutdowns_requested.append(restart)

    def cleanup(self) -> None:
        self.cleanups += 1

    # -- test controls -------------------------------------------------------

    def end(self, code: int | None) -> None:
        """The process ends (on its own, or because it was told to)."""
        if self.ended:
            return
        self.ended = True
        self.exit_code = code
        self.events.append(f"kernel {self.pid} ended")
        self.sockets.unserve(self)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:  # it may have timed out and been cancelled
                waiter.callback(code)

    def publish(
        self,
        msg_type: str,
        content: dict[str, Any],
        parent: messages.RawMessage | None = None,
        signer: messages.Signer | None = None,
    ) -> messages.RawMessage:
        """Publish one iopub message to every subscriber."""
        message = messages.new_message(msg_type, content, session=self.session, parent=parent)
        frames = messages.to_zmq(message, signer or self.signer)
        for socket in self.sockets.subscribers(self):
            socket.deliver(list(frames))
        return message

    def reply(self, socket: FakeSocket, msg_type: str, content: dict[str, Any], parent: messages.RawMessage) -> None:
        message = messages.new_message(msg_type, content, session=self.session, parent=parent)
        socket.deliver(messages.to_zmq(message, self.signer))

    def received(self, channel: str, frames: list[bytes], socket: FakeSocket) -> None:
        """A message arrives from the gateway on ``channel`` through ``socket``."""
        if self.ended:
            return
        try:
            message = messages.from_zmq(frames, self.signer)
        except messages.MalformedMessage:
            self.rejected.append((channel, frames))
            return
        self.received_messages.append((channel, message))
        kind = message.msg_type
        if channel == "shell" and kind == "kernel_info_request":
            if self.answers_kernel_info:
                self._answer(socket, message, "kernel_info_reply", KERNEL_INFO_CONTENT)
        elif channel == "shell" and kind == "execute_request":
            if messages.parse_json_part(message.content).get("code") == "input()":
                # As ipykernel: input_request on stdin, to the identity that sent the execute_request.
                stdin = self.sockets.peer(socket, channel_url(self.connection_info, "stdin"))
                self.reply(stdin, "input_request", {"prompt": "", "password": False}, message)
                return
            self._answer(socket, message, "execute_reply", {"status": "ok", "execution_count": 1})
        elif channel == "control" and kind == "interrupt_request":
            self.reply(socket, "interrupt_reply", {"status": "ok"}, message)
        elif channel == "control" and kind == "shutdown_request":
            self.reply(socket, "shutdown_reply", {"status": "ok", "restart": False}, message)
            if self.exits_on_shutdown_request:
                self.sockets.clock.callLater(0, self.end, 0)

    def _answer(self, socket: FakeSocket, request: messages.RawMessage, msg_type: str, content: dict[str, Any]) -> None:
        if self.publishes_status:
            self.publish("status", {"execution_state": "busy"}, parent=request)
        self.reply(socket, msg_type, content, request)
        if self.publishes_status:
            self.publish("status", {"execution_state": "idle"}, parent=request)

    def messages_of(self, msg_type: str) -> list[tuple[str, messages.RawMessage]]:
        """What the gateway sent of one type, with the channel it came on."""
        return [(channel, m) for channel, m in self.received_messages if m.msg_type == msg_type]


@implementer(IKernelLauncher)
class FakeLauncher:
    """Launches FakeRunningKernels; records every launch.

    ``behaviour`` applies to kernels launched from now on; ``failure`` makes
    the next launches fail with it.
    """

    def __init__(self, sockets: FakeSockets, events: list[str] | None = None) -> None:
        self.sockets = sockets
        self.events = events if events is not None else sockets.events
        self.behaviour: dict[str, Any] = {}
        self.failure: Exception | None = None
        self.launches: list[dict[str, Any]] = []
        self.kernels: list[FakeRunningKernel] = []
        self.stopped = False
        self._next_port = 50000
        self._next_pid = 1000

    def launch(self, kernel_id, spec_name, spec, env, cwd, connection_info=None):  # type: ignore[no-untyped-def]
        self.launches.append(
            {
                "kernel_id": kernel_id,
                "spec_name": spec_name,
                "spec": spec,
                "env": dict(env),
                "cwd": cwd,
                "connection_info": connection_info,
            }
        )
        if self.failure is not None:
            return defer.fail(self.failure)
        if connection_info is None:
            connection_info = {"transport": "tcp", "ip": "127.0.0.1", "signature_scheme": "hmac-sha256"}
            for channel in CHANNELS:
                connection_info[f"{channel}_port"] = self._next_port
                self._next_port += 1
            connection_info["key"] = f"key-{self._next_port}"
        self._next_pid += 1
        kernel = FakeRunningKernel(
            self.sockets, dict(connection_info), self._next_pid, self.events, **self.behaviour
        )
        self.kernels.append(kernel)
        return defer.succeed(kernel)

    def stop(self) -> None:
        """Nothing in flight: every fake launch completes at once."""
        self.stopped = True

    def alive(self) -> list[FakeRunningKernel]:
        return [k for k in self.kernels if not k.ended]


def write_kernelspec(
    kernels_dir: str,
    name: str,
    *,
    display_name: str | None = None,
    interrupt_mode: str | None = None,
    env: dict[str, str] | None = None,
    resources: dict[str, bytes] | None = None,
) -> str:
    """Write ``kernels_dir/name/kernel.json`` (plus resource files); return the spec directory."""
    directory = os.path.join(kernels_dir, name)
    os.makedirs(directory, exist_ok=True)
    spec: dict[str, Any] = {
        "argv": ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name or name.title(),
        "language": "python",
    }
    if interrupt_mode is not None:
        spec["interrupt_mode"] = interrupt_mode
    if env is not None:
        spec["env"] = env
    with open(os.path.join(directory, "kernel.json"), "w") as f:
        json.dump(spec, f)
    for fname, content in (resources or {}).items():
        with open(os.path.join(directory, fname), "wb") as f:
            f.write(content)
    return directory


def temporary_specs(kernels_dir: str, default_name: str = "") -> KernelSpecs:
    """KernelSpecs that see only the specs written below ``kernels_dir``."""
    manager = KernelSpecManager(kernel_dirs=[kernels_dir], ensure_native_kernel=False)
    return KernelSpecs(default_name, manager=manager)


@dataclass
class FakeMachine:
    """What a Kernels test runs on: a clock, fake sockets and launcher, and two kernelspecs."""

    clock: Clock
    sockets: FakeSockets
    launcher: FakeLauncher
    specs: KernelSpecs
    kernels_dir: str


def fake_machine(kernels_dir: str) -> FakeMachine:
    """A ``FakeMachine`` whose kernelspecs ``python3`` and ``other`` are written below ``kernels_dir``."""
    clock = Clock()
    sockets = FakeSockets(clock)
    write_kernelspec(kernels_dir, "python3")
    write_kernelspec(kernels_dir, "other")
    return FakeMachine(clock, sockets, FakeLauncher(sockets), temporary_specs(kernels_dir), kernels_dir)
