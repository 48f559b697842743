"""Run one code cell on a new kgd kernel over the channels WebSocket and print its output.

    python examples/run_cell.py --url http://127.0.0.1:8888 --token s3cret "print(6 * 7)"

It starts a kernel with ``POST /api/kernels``, sends an ``execute_request``
as a JSON text frame on the ``shell`` channel, prints the ``stream`` output
whose parent is that request until the kernel reports ``idle``, and deletes
the kernel.  Needs the ``websockets`` package.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.request
import uuid

import websockets


def call(url: str, token: str, method: str, path: str) -> bytes:
    """One REST call with the token in the Authorization header."""
    request = urllib.request.Request(
        url + path, data=b"{}" if method == "POST" else None, method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request) as response:
        return response.read()


async def run_cell(url: str, token: str, code: str) -> None:
    kernel = json.loads(call(url, token, "POST", "/api/kernels"))
    ws_url = url.replace("http", "ws", 1) + f"/api/kernels/{kernel['id']}/channels?session_id={uuid.uuid4()}"
    try:
        async with websockets.connect(ws_url, additional_headers={"Authorization": f"token {token}"}) as ws:
            msg_id = uuid.uuid4().hex
            header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "", "session": "", "version": "5.3"}
            content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
            await ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}))
            async for frame in ws:
                message = json.loads(frame)
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                if message["msg_type"] == "stream":
                    print(message["content"]["text"], end="")
                elif message["msg_type"] == "error":
                    print(f"{message['content']['ename']}: {message['content']['evalue']}")
                elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                    break
    finally:
        call(url, token, "DELETE", f"/api/kernels/{kernel['id']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8888")
    parser.add_argument("--token", default="")
    parser.add_argument("code")
    arguments = parser.parse_args()
    asyncio.run(run_cell(arguments.url.rstrip("/"), arguments.token, arguments.code))


if __name__ == "__main__":
    main()
