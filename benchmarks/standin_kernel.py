"""A small protocol-correct stand-in kernel, to measure a gateway's own cost per kernel.

Why: a real ipykernel costs ~50 MB and most of a core's time per execute, so
with 200 kernels, or a relay driven flat out, the kernels hide the gateway.
This process speaks the kernel side of the Jupyter messaging protocol over
ZeroMQ and does nothing else; it is a benchmark tool, not a test kernel.

Run as a kernelspec argv: ``python3 standin_kernel.py {connection_file}``.

What it does, per the connection file (transport, ip, ports, key, scheme):
- binds shell, control and stdin ROUTER, iopub PUB and hb REP;
- checks every request's HMAC (``hmac-sha256``; an empty key means unsigned)
  and drops badly signed ones, signs everything it sends;
- around every shell request publishes iopub ``status: busy`` ... ``idle``;
- ``kernel_info_request``: a reply with protocol 5.3 and language ``python``;
- ``execute_request``: ``execute_input``, one ``stream`` (stdout) echoing the
  first bytes of the code, ``execute_reply``; ``execution_count`` increments
  unless ``silent``. Code starting with ``input(`` and ``allow_stdin`` true
  sends ``input_request`` on stdin to the identity that sent the execute and
  echoes the ``input_reply`` value as the stream;
- ``comm_info_request``: no comms; ``interrupt_request``: ``status: ok``;
- ``shutdown_request`` (control or shell): the reply (also on iopub), then exit;
- exits when its parent process goes away if it was given ``JPY_PARENT_PID``
  (as ipykernel does; a kernel detached to outlive its gateway is not), and ignores SIGINT (the kernelspec
  written by ``_gateways`` asks for ``interrupt_mode: message``).

It imports only pyzmq and the standard library: ~21 MiB RSS, of which ~9 MiB
is its own (dirty) memory, the rest the interpreter's and libraries' pages
that every stand-in shares.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sys
import uuid
from datetime import datetime, timezone
from collections.abc import Sequence
from typing import Any

import zmq

DELIMITER = b"<IDS|MSG>"
PROTOCOL_VERSION = "5.3"
ECHO_BYTES = 32
PARENT_POLL_MS = 1000


class Wire:
    """Signs, verifies, encodes and decodes messages with the connection's key."""

    def __init__(self, key: bytes, scheme: str) -> None:
        if key and scheme != "hmac-sha256":
            raise SystemExit(f"standin_kernel: unsupported signature scheme {scheme!r}")
        self._key = key
        self.session = uuid.uuid4().hex

    def _sign(self, parts: list[bytes]) -> bytes:
        if not self._key:
            return b""
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(part)
        return mac.hexdigest().encode()

    def decode(self, frames: list[bytes]) -> tuple[list[bytes], dict[str, Any]] | None:
        """(routing identities, message) of a multipart request, or None if it is malformed or forged."""
        try:
            split = frames.index(DELIMITER)
        except ValueError:
            return None
        signature, *parts = frames[split + 1:split + 6]
        if len(parts) < 4 or not hmac.compare_digest(signature, self._sign(parts[:4])):
            return None
        header, parent, metadata, content = (json.loads(part) for part in parts[:4])
        return frames[:split], {"header": header, "parent_header": parent, "metadata": metadata,
                                "content": content}

    def encode(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any],
               identities: Sequence[bytes] = ()) -> list[bytes]:
        header = {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "username": "kernel",
                  "session": self.session, "date": datetime.now(timezone.utc).isoformat(),
                  "version": PROTOCOL_VERSION}
        parts = [json.dumps(part).encode() for part in (header, parent.get("header", {}), {}, content)]
        return [*identities, DELIMITER, self._sign(parts), *parts]


KERNEL_INFO = {
    "status": "ok", "protocol_version": PROTOCOL_VERSION, "implementation": "kgd-standin",
    "implementation_version": "1.0", "banner": "kgd benchmark stand-in kernel", "help_links": [],
    "language_info": {"name": "python", "version": sys.version.split()[0], "mimetype": "text/x-python",
                      "file_extension": ".py"},
}


class StandinKernel:
    """The sockets and the little state a kernel needs: the execution count."""

    def __init__(self, connection: dict[str, Any]) -> None:
        self.wire = Wire(connection.get("key", "").encode(), connection.get("signature_scheme", "hmac-sha256"))
        self.context = zmq.Context(io_threads=1)
        address = f"{connection['transport']}://{connection['ip']}"
        separator = ":" if connection["transport"] == "tcp" else "-"

        def bind(kind: int, port_name: str) -> zmq.Socket:
            sock = self.context.socket(kind)
            sock.linger = 1000
            sock.bind(f"{address}{separator}{connection[port_name]}")
            return sock

        self.shell = bind(zmq.ROUTER, "shell_port")
        self.control = bind(zmq.ROUTER, "control_port")
        self.stdin = bind(zmq.ROUTER, "stdin_port")
        self.iopub = bind(zmq.PUB, "iopub_port")
        self.hb = bind(zmq.REP, "hb_port")
        self.execution_count = 0
        self.running = True

    def serve(self) -> None:
        parent_pid = os.getppid() if os.environ.get("JPY_PARENT_PID") else None
        poller = zmq.Poller()
        for sock in (self.shell, self.control, self.hb):
            poller.register(sock, zmq.POLLIN)
        while self.running:
            ready = dict(poller.poll(PARENT_POLL_MS))
            if self.hb in ready:
                self.hb.send_multipart(self.hb.recv_multipart())
            if self.control in ready:  # control first, as a kernel does
                self.handle(self.control, self.control.recv_multipart())
            if self.running and self.shell in ready:
                self.handle(self.shell, self.shell.recv_multipart())
            if parent_pid is not None and os.getppid() != parent_pid:
                break
        for sock in (self.shell, self.control, self.stdin, self.iopub, self.hb):
            sock.close()
        self.context.term()

    def publish(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any]) -> None:
        self.iopub.send_multipart(self.wire.encode(msg_type, content, parent, [msg_type.encode()]))

    def handle(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        decoded = self.wire.decode(frames)
        if decoded is None:
            print("standin_kernel: dropped a malformed or badly signed message", file=sys.stderr)
            return
        identities, msg = decoded
        msg_type = msg["header"].get("msg_type", "")
        self.publish("status", {"execution_state": "busy"}, msg)
        reply = self.answer(msg_type, msg, identities)
        if reply is not None:
            sock.send_multipart(self.wire.encode(msg_type.replace("_request", "_reply"), reply, msg, identities))
            if msg_type == "shutdown_request":
                self.publish("shutdown_reply", reply, msg)
                self.running = False
        self.publish("status", {"execution_state": "idle"}, msg)

    def answer(self, msg_type: str, msg: dict[str, Any], identities: list[bytes]) -> dict[str, Any] | None:
        """The reply content for ``msg``; None for a message type a kernel does not answer."""
        content = msg["content"]
        if msg_type == "kernel_info_request":
            return KERNEL_INFO
        if msg_type == "execute_request":
            return self.execute(msg, identities)
        if msg_type == "comm_info_request":
            return {"status": "ok", "comms": {}}
        if msg_type == "interrupt_request":
            return {"status": "ok"}
        if msg_type == "shutdown_request":
            return {"status": "ok", "restart": bool(content.get("restart"))}
        return None

    def execute(self, msg: dict[str, Any], identities: list[bytes]) -> dict[str, Any]:
        content = msg["content"]
        code = str(content.get("code", ""))
        silent = bool(content.get("silent"))
        if not silent:
            self.execution_count += 1
            self.publish("execute_input", {"code": code, "execution_count": self.execution_count}, msg)
            if code.startswith("input(") and content.get("allow_stdin"):
                text = self.read_input(msg, identities)
            else:
                text = code[:ECHO_BYTES]
            self.publish("stream", {"name": "stdout", "text": text + "\n"}, msg)
        return {"status": "ok", "execution_count": self.execution_count, "user_expressions": {}, "payload": []}

    def read_input(self, msg: dict[str, Any], identities: list[bytes]) -> str:
        """Ask the client that sent ``msg`` for input on stdin; its reply's value (or '' if shut down)."""
        self.stdin.send_multipart(self.wire.encode("input_request", {"prompt": "", "password": False},
                                                   msg, identities))
        poller = zmq.Poller()
        poller.register(self.stdin, zmq.POLLIN)
        poller.register(self.control, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self.control in ready:
                self.handle(self.control, self.control.recv_multipart())
                if not self.running:
                    return ""
            if self.stdin in ready:
                decoded = self.wire.decode(self.stdin.recv_multipart())
                if decoded and decoded[1]["header"].get("msg_type") == "input_reply":
                    return str(decoded[1]["content"].get("value", ""))


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: standin_kernel.py CONNECTION_FILE")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with open(argv[1]) as connection_file:
        connection = json.load(connection_file)
    StandinKernel(connection).serve()


if __name__ == "__main__":
    main(sys.argv)
