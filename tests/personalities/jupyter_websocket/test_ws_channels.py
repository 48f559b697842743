"""The channels WebSocket against the real daemon and real ipykernel kernels.

Each test starts one daemon (with a token, a 1 MiB message limit and an
allowed origin) and drives it with ``tests.integration.ws``, whose frame
decoding is independent of kgd's codec.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import uuid
from typing import Any

from twisted.internet import defer, endpoints, reactor
from twisted.trial import unittest

from tests.integration import fifo_gate
from tests.integration.daemon import Client, Daemon, poll_until
from tests.integration.ws import (
    V1,
    ChannelsConnection,
    Message,
    StalledClient,
    connect,
    encode_v1,
    execute_request,
    finished,
    idle_for,
    of_type,
    request,
)

TOKEN = "ws-s3cret"
MAX_MESSAGE = 1024 * 1024
ALLOWED_ORIGIN = "https://ok.example"

REGISTER_ECHO_COMM = """
def _echo_target(comm, open_msg):
    comm.send({'opened': open_msg['content']['data']})

    @comm.on_msg
    def _echo(msg):
        comm.send({'echo': msg['content']['data']}, buffers=msg['buffers'])

    @comm.on_close
    def _closed(msg):
        print('comm closed', msg['content']['data'])

get_ipython().kernel.comm_manager.register_target('echo', _echo_target)
"""

DISPLAY_WITH_BUFFERS = """
_k = get_ipython().kernel
_k.session.send(_k.iopub_socket, 'display_data', {'data': {'text/plain': 'with buffers'}, 'metadata': {}},
                parent=_k.get_parent(), buffers=[b'\\x00\\x01\\x02binary', b'second'])
"""


def stdout(messages: list[Message]) -> str:
    """The stdout text among ``messages``, in order."""
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["channel"] == "iopub" and m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


def replies(messages: list[Message], channel: str = "shell") -> list[Message]:
    """The replies among ``messages`` on ``channel``."""
    return [m for m in messages if m["channel"] == channel]


def upgrade_headers(**extra: str) -> dict[str, str]:
    """The headers of a WebSocket upgrade request, for checking refusals over plain HTTP."""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    headers.update(extra)
    return headers


class ChannelsTestCase(unittest.TestCase):
    """One daemon per test, and a kernel on demand."""

    timeout = 120
    daemon_args: tuple[str, ...] = ()

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.daemon = Daemon(
            [
                "--auth-token",
                TOKEN,
                "--list-kernels",
                "--max-message-size",
                str(MAX_MESSAGE),
                "--allow-origin",
                ALLOWED_ORIGIN,
                *self.daemon_args,
            ]
        )
        yield self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.client = Client(self.daemon, token=TOKEN)

    @defer.inlineCallbacks
    def start_kernel(self) -> Any:
        status, _, model = yield self.client.request("POST", "/api/kernels", {"name": "python3"})
        self.assertEqual(status, 201, model)
        return model["id"]

    @defer.inlineCallbacks
    def open(self, kernel_id: str, **kwargs: Any) -> Any:
        """Open a channels WebSocket; it is closed at the end of the test."""
        kwargs.setdefault("token", TOKEN)
        connection = yield connect(self.daemon.ws_url, kernel_id, **kwargs)
        self.addCleanup(connection.close)
        return connection

    @defer.inlineCallbacks
    def model(self, kernel_id: str) -> Any:
        status, _, model = yield self.client.request("GET", f"/api/kernels/{kernel_id}")
        return model if status == 200 else None


class MessagingTests(ChannelsTestCase):
    """What a notebook does over the legacy JSON protocol and over v1."""

    @defer.inlineCallbacks
    def test_legacy_protocol_messages(self) -> None:
        """Without a subprotocol: nudge status on connect, stream, execute_result, error, stdin, comms, buffers."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id, session_id=uuid.uuid4().hex)
        self.assertIsNone(ws.subprotocol)

        # The connect nudge: status busy/idle for a kernel_info_request this client never sent.
        nudge = yield ws.wait_for(of_type("status", "iopub"), since=0)
        self.assertEqual(nudge[-1]["parent_header"]["msg_type"], "kernel_info_request")

        out = yield ws.execute("print('hello')\n6 * 7")
        self.assertEqual(stdout(out), "hello\n")
        [result] = [m for m in out if m["header"]["msg_type"] == "execute_result"]
        self.assertEqual(result["content"]["data"]["text/plain"], "42")
        self.assertEqual(result["msg_type"], "execute_result")
        self.assertEqual(result["msg_id"], result["header"]["msg_id"])
        self.assertEqual(result["buffers"], [])
        [reply] = replies(out)
        self.assertEqual((reply["header"]["msg_type"], reply["content"]["status"]), ("execute_reply", "ok"))

        out = yield ws.execute("1 / 0")
        [reply] = replies(out)
        self.assertEqual((reply["content"]["status"], reply["content"]["ename"]), ("error", "ZeroDivisionError"))
        self.assertIn("error", [m["header"]["msg_type"] for m in out if m["channel"] == "iopub"])

        # stdin: the input_request reaches this connection, the reply goes back on stdin.
        asking = execute_request("name = input('name? ')\nprint('got', name)")
        start = len(ws.messages)
        ws.send(asking)
        [*_, prompt] = yield ws.wait_for(of_type("input_request", "stdin"))
        self.assertEqual(prompt["content"]["prompt"], "name? ")
        answer = request("input_reply", {"value": "kgd"}, channel="stdin")
        answer["parent_header"] = prompt["header"]
        ws.send(answer)
        out = yield ws.wait_for(idle_for(asking), since=start)
        self.assertEqual(stdout(out), "got kgd\n")

        # Comms: open, message with binary buffers (a legacy binary frame each way), close.
        yield ws.execute(REGISTER_ECHO_COMM)
        comm_id = uuid.uuid4().hex
        ws.send(request("comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {"x": 1}}))
        [*_, opened] = yield ws.wait_for(of_type("comm_msg", "iopub"))
        self.assertEqual(opened["content"], {"comm_id": comm_id, "data": {"opened": {"x": 1}}})
        message = request("comm_msg", {"comm_id": comm_id, "data": {"y": 2}})
        message["buffers"] = [b"\x00\xffraw", b""]
        ws.send(message)
        [*_, echo] = yield ws.wait_for(of_type("comm_msg", "iopub"))
        self.assertEqual(echo["content"]["data"], {"echo": {"y": 2}})
        self.assertEqual(echo["buffers"], [b"\x00\xffraw", b""])
        self.assertTrue(ws.frames[-1][1], "a message with buffers arrives as a binary frame")
        ws.send(request("comm_close", {"comm_id": comm_id, "data": {"bye": True}}))
        [*_, closed] = yield ws.wait_for(of_type("stream", "iopub"))
        self.assertEqual(closed["content"]["text"], "comm closed {'bye': True}\n")

        out = yield ws.execute(DISPLAY_WITH_BUFFERS)
        [display] = [m for m in out if m["header"]["msg_type"] == "display_data"]
        self.assertEqual(display["content"]["data"], {"text/plain": "with buffers"})
        self.assertEqual(display["buffers"], [b"\x00\x01\x02binary", b"second"])
        self.assertEqual(display["channel"], "iopub")
        # The replies to the gateway's nudge are the gateway's own.
        self.assertNotIn("kernel_info_reply", [m["header"]["msg_type"] for m in ws.messages])

    @defer.inlineCallbacks
    def test_v1_subprotocol(self) -> None:
        """Offering v1 selects it: binary frames both ways, buffers included; offering others selects none."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id, protocols=["other.protocol", V1])
        self.assertEqual(ws.subprotocol, V1)
        out = yield ws.execute("print('over v1')\n'done'")
        self.assertEqual(stdout(out), "over v1\n")
        self.assertTrue(all(binary for _, binary in ws.frames))
        self.assertEqual(ws.frames[-1][0][:8], struct.pack("<Q", 6), "six offsets: channel, four parts, end")
        [result] = [m for m in out if m["header"]["msg_type"] == "execute_result"]
        self.assertEqual(result["content"]["data"]["text/plain"], "'done'")

        out = yield ws.execute(DISPLAY_WITH_BUFFERS)
        [display] = [m for m in out if m["header"]["msg_type"] == "display_data"]
        self.assertEqual(display["buffers"], [b"\x00\x01\x02binary", b"second"])

        yield ws.execute(REGISTER_ECHO_COMM)
        comm_id = uuid.uuid4().hex
        ws.send(request("comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {}}))
        yield ws.wait_for(of_type("comm_msg", "iopub"))
        message = request("comm_msg", {"comm_id": comm_id, "data": {"v": 1}})
        message["buffers"] = [b"\x01\x02\x03"]
        ws.send(message)
        [*_, echo] = yield ws.wait_for(of_type("comm_msg", "iopub"))
        self.assertEqual((echo["content"]["data"], echo["buffers"]), ({"echo": {"v": 1}}, [b"\x01\x02\x03"]))

        unknown = yield self.open(kernel_id, protocols=["other.protocol"])
        self.assertIsNone(unknown.subprotocol, "never answer a subprotocol the client did not offer")
        out = yield unknown.execute("print('legacy')")
        self.assertEqual(stdout(out), "legacy\n")
        self.assertFalse(unknown.frames[-1][1], "legacy messages without buffers are text frames")

    @defer.inlineCallbacks
    def test_large_output_arrives_whole_and_in_order(self) -> None:
        """A cell writing 20 MB to stdout (past the 1 MiB client message limit) arrives complete and in order."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id)
        code = "import sys\nfor i in range(20):\n    sys.stdout.write(f'{i:07d}' + 'x' * 999_993)\n"
        out = yield ws.execute(code, timeout=90)
        expected = "".join(f"{i:07d}" + "x" * 999_993 for i in range(20))
        text = stdout(out)
        self.assertEqual(len(text), 20_000_000)
        self.assertTrue(text == expected, "the output is reordered or corrupted")


class ConnectionsTests(ChannelsTestCase):
    """Several connections, reconnects, and a kernel that dies."""

    daemon_args = ("--session-buffer-age", "60", "--ws-ping-interval", "0.2")

    @defer.inlineCallbacks
    def test_two_connections_share_iopub_but_not_replies(self) -> None:
        """Both connections see iopub; only the connection that asked gets the execute_reply."""
        kernel_id = yield self.start_kernel()
        first = yield self.open(kernel_id, session_id="first")
        second = yield self.open(kernel_id, session_id="second")
        model = yield self.model(kernel_id)
        self.assertEqual(model["connections"], 2)

        asked = execute_request("print('to everyone')")
        start, first_start = len(second.messages), len(first.messages)
        first.send(asked)
        seen_by_second = yield second.wait_for(idle_for(asked), since=start)
        self.assertEqual(stdout(seen_by_second), "to everyone\n")
        out = yield first.wait_for(
            lambda m: m["parent_header"].get("msg_id") == asked["header"]["msg_id"] and m["channel"] == "shell",
            since=first_start,
        )
        self.assertEqual(out[-1]["content"]["status"], "ok")
        # The kernel answers in order on one shell: had the first reply been
        # routed to the second connection, it would come before this one.
        out = yield second.execute("print('mine')")
        self.assertEqual(stdout(out), "mine\n")
        parents = [m["parent_header"].get("msg_id") for m in second.messages if m["channel"] == "shell"]
        self.assertNotIn(asked["header"]["msg_id"], parents)

        yield first.close()
        yield poll_until(lambda: self.model(kernel_id).addCallback(lambda m: m["connections"] == 1))

    @defer.inlineCallbacks
    def test_same_session_replaces_stale_connection(self) -> None:
        """A second connection with the same session_id closes the first (1000) and takes its replies."""
        kernel_id = yield self.start_kernel()
        stale = yield self.open(kernel_id, session_id="shared")
        fresh = yield self.open(kernel_id, session_id="shared")
        code, reason = yield stale.closed
        self.assertEqual(code, 1000)
        self.assertIn("replaced", reason)
        out = yield fresh.execute("print('fresh')")
        self.assertEqual(stdout(out), "fresh\n")
        model = yield self.model(kernel_id)
        self.assertEqual(model["connections"], 1)

    @defer.inlineCallbacks
    def gated_cell_while_away(self, kernel_id: str, ws: ChannelsConnection) -> Any:
        """Run a cell that prints only after the client left; fires with its request once the kernel is idle."""
        gate = fifo_gate.gate(self)
        # The cell blocks reading the FIFO until the test opens and closes its other end.
        cell = execute_request(f"open({gate!r}).read()\nfor i in range(4):\n    print('tick', i, flush=True)\n")
        ws.send(cell)
        yield ws.wait_for(of_type("execute_input", "iopub"))
        yield ws.close()
        yield poll_until(lambda: self.model(kernel_id).addCallback(lambda m: m["connections"] == 0))
        yield poll_until(lambda: fifo_gate.release(gate))
        yield poll_until(lambda: self.model(kernel_id).addCallback(lambda m: m["execution_state"] == "idle"))
        return cell

    @defer.inlineCallbacks
    def test_reconnect_replays_or_discards_buffered_messages(self) -> None:
        """Messages sent while away are replayed in order to the same session_id, and dropped for another one."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id, session_id="s1")
        cell = yield self.gated_cell_while_away(kernel_id, ws)

        back = yield self.open(kernel_id, session_id="s1")
        replayed = yield back.wait_for(idle_for(cell), since=0)
        self.assertEqual(stdout(replayed), "".join(f"tick {i}\n" for i in range(4)))
        yield back.wait_for(lambda m: m["channel"] == "shell" and m["parent_header"].get("msg_id") == cell["header"]["msg_id"], since=0)

        cell = yield self.gated_cell_while_away(kernel_id, back)
        other = yield self.open(kernel_id, session_id="s2")
        out = yield other.execute("print('marker')")
        everything = other.messages
        self.assertEqual(stdout(everything), "marker\n")
        self.assertNotIn(cell["header"]["msg_id"], [m["parent_header"].get("msg_id") for m in everything])
        self.assertEqual(stdout(out), "marker\n")
        yield poll_until(lambda: b"buffer discarded" in self.daemon.log, timeout=10)

    @defer.inlineCallbacks
    def test_killed_kernel_restarts_under_the_same_socket(self) -> None:
        """SIGKILL of the kernel: clients see iopub status restarting (empty parent), then execute works again."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id, session_id="k")
        out = yield ws.execute("import os\nos.getpid()")
        [result] = [m for m in out if m["header"]["msg_type"] == "execute_result"]
        pid = int(result["content"]["data"]["text/plain"])
        os.kill(pid, signal.SIGKILL)
        [*_, restarting] = yield ws.wait_for(
            lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "restarting"
        )
        self.assertEqual(restarting["channel"], "iopub")
        self.assertEqual(restarting["parent_header"], {})
        self.assertEqual(restarting["msg_type"], "status")
        yield poll_until(lambda: self.model(kernel_id).addCallback(lambda m: m["execution_state"] == "idle"))
        out = yield ws.execute("print('back', 'x' in dir())")
        self.assertEqual(stdout(out), "back False\n")

    @defer.inlineCallbacks
    def test_kernel_dead_for_good_closes_with_1011(self) -> None:
        """A kernel that keeps dying is declared dead: iopub status dead, then close 1011, then 404."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id, session_id="doomed")
        while True:
            out = yield ws.execute("import os\nos.getpid()")
            [result] = [m for m in out if m["header"]["msg_type"] == "execute_result"]
            start = len(ws.messages)
            os.kill(int(result["content"]["data"]["text/plain"]), signal.SIGKILL)
            [*_, status] = yield ws.wait_for(
                lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] in ("restarting", "dead"),
                since=start,
            )
            if status["content"]["execution_state"] == "dead":
                break
            yield poll_until(lambda: self.model(kernel_id).addCallback(lambda m: m is None or m["execution_state"] == "idle"))
        self.assertEqual(status["parent_header"], {})
        code, reason = yield ws.closed
        self.assertEqual((code, reason), (1011, "kernel died"))
        model = yield self.model(kernel_id)
        self.assertIsNone(model)

    @defer.inlineCallbacks
    def test_keepalive_pings(self) -> None:
        """With --ws-ping-interval 0.2 the gateway pings an idle connection, which stays open."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id)
        yield poll_until(lambda: ws.pings >= 2, timeout=10)
        out = yield ws.execute("print('alive')")
        self.assertEqual(stdout(out), "alive\n")

    @defer.inlineCallbacks
    def test_delete_closes_the_socket_and_reconnect_is_404(self) -> None:
        """DELETE of a kernel closes its WebSockets with 1000; upgrading again gets a 404."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id, session_id="d")
        status, _, _ = yield self.client.request("DELETE", f"/api/kernels/{kernel_id}")
        self.assertEqual(status, 204)
        code, reason = yield ws.closed
        self.assertEqual((code, reason), (1000, "kernel shut down"))
        status, _, body = yield self.client.request("GET", f"/api/kernels/{kernel_id}/channels", headers=upgrade_headers())
        self.assertEqual(status, 404, body)

    @defer.inlineCallbacks
    def test_daemon_stop_closes_with_1001(self) -> None:
        """Stopping the gateway closes its WebSockets with 1001 before the kernels go."""
        kernel_id = yield self.start_kernel()
        ws = yield self.open(kernel_id, session_id="bye")
        yield self.daemon.stop()
        code, reason = yield ws.closed
        self.assertEqual((code, reason), (1001, "gateway shutting down"))


class RefusalTests(ChannelsTestCase):
    """Bad handshakes are refused over HTTP; bad frames close only their own connection."""

    @defer.inlineCallbacks
    def test_handshake_refusals(self) -> None:
        """404 unknown kernel, 401 without token, 403 foreign Origin, 400 without Upgrade; token by query or header."""
        kernel_id = yield self.start_kernel()
        path = f"/api/kernels/{kernel_id}/channels"

        unknown = str(uuid.uuid4())
        status, headers, body = yield self.client.request("GET", f"/api/kernels/{unknown}/channels", headers=upgrade_headers())
        self.assertEqual((status, body["reason"]), (404, "Not Found"))
        self.assertIn(unknown, body["message"])
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])

        status, _, body = yield Client(self.daemon).request("GET", path, headers=upgrade_headers())
        self.assertEqual((status, body["reason"]), (401, "Unauthorized"))

        status, _, body = yield self.client.request("GET", path, headers=upgrade_headers(Origin="https://evil.example"))
        self.assertEqual(status, 403)
        self.assertEqual(body["message"], "Cross origin websockets not allowed")

        status, _, body = yield self.client.request("GET", path)
        self.assertEqual((status, body["message"]), (400, 'Can "Upgrade" only to "WebSocket".'))

        by_query = yield self.open(kernel_id)
        by_header = yield self.open(kernel_id, token="", headers={"Authorization": f"token {TOKEN}"})
        allowed = yield self.open(kernel_id, headers={"Origin": ALLOWED_ORIGIN})
        for ws in (by_query, by_header, allowed):
            out = yield ws.execute("print('ok')")
            self.assertEqual(stdout(out), "ok\n")

    @defer.inlineCallbacks
    def test_bad_frames_close_only_that_connection(self) -> None:
        """Invalid JSON, a bad channel, a truncated frame or too big a message: a close code, a log line, nothing else."""
        kernel_id = yield self.start_kernel()
        bystander = yield self.open(kernel_id, session_id="bystander")
        good = execute_request("print('never run')")
        cases = [
            ("invalid JSON", None, b"{not json", False, 1007),
            ("iopub is not writable", None, json.dumps({**good, "channel": "iopub"}).encode(), False, 1008),
            ("unknown channel", None, json.dumps({**good, "channel": "nope"}).encode(), False, 1008),
            ("truncated legacy binary", None, struct.pack(">II", 2, 12) + b"{}", True, 1007),
            ("truncated v1", V1, struct.pack("<Q", 9) + b"\0" * 8, True, 1007),
            ("text frame on v1", V1, json.dumps(good).encode(), False, 1003),
            ("v1 to iopub", V1, encode_v1({**good, "channel": "iopub"}), True, 1008),
            ("too big", None, b" " * (MAX_MESSAGE + 1), False, 1009),
        ]
        for name, protocol, payload, binary, expected in cases:
            ws = yield self.open(kernel_id, protocols=[protocol] if protocol else [])
            ws.send_raw(payload, binary)
            code, reason = yield ws.closed
            self.assertEqual(code, expected, f"{name}: {reason}")
            self.assertTrue(reason, f"{name}: the close frame gives a reason")
            yield poll_until(lambda: f"code {expected}".encode() in self.daemon.log, timeout=10)
        out = yield bystander.execute("print('still here')")
        self.assertEqual(stdout(out), "still here\n")
        self.assertNotIn("never run", json.dumps(bystander.messages))
        model = yield self.model(kernel_id)
        self.assertEqual((model["connections"], model["execution_state"]), (1, "idle"))


@defer.inlineCallbacks
def paced_execute(client: ChannelsConnection, code: str, piece: int, pieces: int) -> Any:
    """Run ``code`` (``pieces`` times: print ``piece`` characters, then ``input()``), answering
    each input request only once all the output printed before it has arrived.

    Fires with the messages answering the request, as ``ChannelsConnection.execute`` does.
    """
    message = execute_request(code)
    msg_id = message["header"]["msg_id"]
    start = len(client.messages)
    client.send(message)
    read, prompts, seen = 0, [], start
    for answered in range(1, pieces + 1):
        while len(prompts) < answered or read < answered * piece:
            if seen == len(client.messages):
                yield client.wait_for(lambda m: True, timeout=60)
            for m in client.messages[seen:]:
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                if m["channel"] == "stdin" and m["header"]["msg_type"] == "input_request":
                    prompts.append(m)
                elif m["channel"] == "iopub" and m["header"]["msg_type"] == "stream":
                    read += len(m["content"]["text"])
            seen = len(client.messages)
        reply = request("input_reply", {"value": ""}, channel="stdin")
        reply["parent_header"] = prompts[answered - 1]["header"]
        client.send(reply)
    yield client.wait_for(finished(message), timeout=60, since=start)
    return [m for m in client.messages[start:] if m["parent_header"].get("msg_id") == msg_id]


class SlowClientTests(ChannelsTestCase):
    """A client that stops reading cannot make kernel output pile up in the gateway."""

    daemon_args = ("--max-client-backlog", "1M")

    @defer.inlineCallbacks
    def test_stalled_client_is_closed_and_others_keep_working(self) -> None:
        """Past --max-client-backlog the client that is not reading is closed (1008, logged); a reading one is not."""
        kernel_id = yield self.start_kernel()
        watcher = yield self.open(kernel_id, session_id="watcher")
        stalled = yield self.stalled_client(kernel_id)
        yield poll_until(self.connections_are(kernel_id, 2))

        # 30 MB in 100 kB pieces, paced by what the reading client has read: after each
        # piece the kernel waits on input(), which the watcher answers only once that
        # piece has reached it.  So the watcher never has more than one piece unread,
        # however slow the machine, while the stalled client's share piles up.
        cell = "import sys\nfor _ in range(300):\n    sys.stdout.write('x' * 100_000); sys.stdout.flush(); input()"
        out = yield paced_execute(watcher, cell, piece=100_000, pieces=300)
        self.assertEqual(len(stdout(out)), 30_000_000)
        self.assertIn(b"client not reading", self.daemon.log)
        # Reading again, the stalled client finds the gateway has dropped the connection.
        stalled.transport.resumeProducing()
        yield stalled.lost.addTimeout(30, reactor)

        out = yield watcher.execute("print('still here')")
        self.assertEqual(stdout(out), "still here\n")
        yield poll_until(self.connections_are(kernel_id, 1))

    @defer.inlineCallbacks
    def test_pinging_client_not_reading_is_closed(self) -> None:
        """A client that sends pings and never reads the pongs is closed past --max-client-backlog (1008, logged)."""
        kernel_id = yield self.start_kernel()
        stalled = yield self.stalled_client(kernel_id)
        ping = struct.pack("!BB4s", 0x89, 0x80 | 125, b"\0\0\0\0") + b"p" * 125  # masked with a zero key
        # 12 MiB of pongs: past the 1 MiB backlog and whatever the kernels' socket buffers hold.
        for _ in range(12 * 1024**2 // 127 // 1000 + 1):
            stalled.transport.write(ping * 1000)
        yield poll_until(lambda: b"client not reading" in self.daemon.log, timeout=60)
        stalled.transport.resumeProducing()
        yield stalled.lost.addTimeout(30, reactor)
        yield poll_until(self.connections_are(kernel_id, 0))

    @defer.inlineCallbacks
    def stalled_client(self, kernel_id: str) -> Any:
        """A channels WebSocket, upgraded, whose client then never reads."""
        path = f"/api/kernels/{kernel_id}/channels?session_id=stalled&token={TOKEN}"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.daemon.port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        stalled = StalledClient(request)
        yield endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.daemon.port), stalled)
        status_line = yield stalled.upgraded
        self.assertIn(b" 101 ", status_line)
        return stalled

    def connections_are(self, kernel_id: str, count: int) -> Any:
        @defer.inlineCallbacks
        def check() -> Any:
            model = yield self.model(kernel_id)
            return model["connections"] == count

        return check
