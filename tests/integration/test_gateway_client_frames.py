"""Enterprise Gateway's and kernel_gateway_demos' Python clients against the real daemon.

Those clients start ``{"name": "python"}`` and send every message as a text
frame with ``"buffers": {}`` and a header without ``date``; kgd used to
answer 404 and close with 1007. Here a real ipykernel runs hello world, an
interrupt and a restart through frames shaped exactly like theirs.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.internet import defer
from twisted.trial import unittest

from tests.integration import ws
from tests.integration.daemon import Client, Daemon

TOKEN = "client-frames-token"


def gateway_client_execute(code: str) -> dict[str, Any]:
    """An execute_request as EG's gateway_client.py and the demos' client.py build it."""
    return {
        "header": {
            "username": "",
            "version": "5.0",
            "session": "",
            "msg_id": uuid.uuid4().hex,
            "msg_type": "execute_request",
        },
        "parent_header": {},
        "channel": "shell",
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        },
        "metadata": {},
        "buffers": {},
    }


class GatewayClientFramesTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def setUp(self) -> Any:
        self.daemon = Daemon(["--auth-token", TOKEN, "--list-kernels"])
        yield self.daemon.start()
        self.addCleanup(self.daemon.stop)
        self.client = Client(self.daemon, TOKEN)

    @defer.inlineCallbacks
    def execute(self, connection: ws.ChannelsConnection, code: str) -> Any:
        """Send ``code`` as those clients do; fire with the messages answering it."""
        frame = gateway_client_execute(code)
        start = len(connection.messages)
        connection.send_raw(json.dumps(frame).encode(), binary=False)
        messages = yield connection.wait_for(ws.finished(frame), 60, since=start)
        return [m for m in messages if m["parent_header"].get("msg_id") == frame["header"]["msg_id"]]

    @defer.inlineCallbacks
    def test_hello_interrupt_restart(self) -> None:
        """{"name": "python"} starts python3; hello world prints, an interrupt ends a waiting cell with
        KeyboardInterrupt, and after a restart the same socket executes again; no kernel is left."""
        status, _, model = yield self.client.request("POST", "/api/kernels", {"name": "python"})
        self.assertEqual((status, model["name"]), (201, "python3"))
        kernel_id = model["id"]
        connection = yield ws.connect(self.daemon.ws_url, kernel_id, token=TOKEN)

        messages = yield self.execute(connection, "print('hello world')")
        streams = [m["content"]["text"] for m in messages if m["header"]["msg_type"] == "stream"]
        self.assertEqual(streams, ["hello world\n"])

        # The interrupt goes out once the cell is running: its output says so.
        frame = gateway_client_execute("import threading; print('waiting', flush=True); threading.Event().wait()")
        start = len(connection.messages)
        connection.send_raw(json.dumps(frame).encode(), binary=False)
        yield connection.wait_for(lambda m: m["content"].get("text") == "waiting\n", 60, since=start)
        status, _, _ = yield self.client.request("POST", f"/api/kernels/{kernel_id}/interrupt")
        self.assertEqual(status, 204)
        messages = yield connection.wait_for(ws.finished(frame), 60, since=start)
        [reply] = [m for m in messages if m["header"]["msg_type"] == "execute_reply"]
        self.assertEqual((reply["content"]["status"], reply["content"]["ename"]), ("error", "KeyboardInterrupt"))

        status, _, _ = yield self.client.request("POST", f"/api/kernels/{kernel_id}/restart")
        self.assertEqual(status, 200)
        messages = yield self.execute(connection, "print(6 * 7)")
        self.assertIn("42\n", [m["content"].get("text") for m in messages])
        self.assertIsNone(connection.close_code)

        yield connection.close()
        status, _, _ = yield self.client.request("DELETE", f"/api/kernels/{kernel_id}")
        self.assertEqual(status, 204)
        status, _, kernels = yield self.client.request("GET", "/api/kernels")
        self.assertEqual((status, kernels), (200, []))
