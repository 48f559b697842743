"""`jupyter server --gateway-url` as a real client of a kernel gateway.

Why: the most common production client of a kernel gateway is not a browser
but a Jupyter server started with ``--gateway-url``. It proxies its own REST
API and kernel WebSockets to the gateway with its own habits: it lists
``GET /api/kernels`` (so the gateway must have list-kernels on), posts an
``env`` of ``KERNEL_*`` variables, sends the token as ``Authorization: token``,
opens the gateway WebSocket with a ``session_id`` and no subprotocol, and sends
``{}`` bodies to interrupt and restart. Running the real jupyter_server in
front of a gateway is the only faithful way to know the gateway works for it.

The scenario starts ``jupyter server`` on loopback with throwaway config,
data and runtime directories, then talks only to jupyter_server's own API and
WebSocket (with jupyter_server's own token): create a kernel, execute code,
interrupt a cell that waits forever, restart, execute again, delete. Every
wait has a deadline; the jupyter server process is always stopped and reaped.

``run_restart_scenario`` keeps a kernel through a restart of the gateway
(the caller restarts it when asked): jupyter_server reconnects to the gateway
by itself, and the variable set before is read on the same client WebSocket.

Run it as ``python tests/clients/gateway_client.py GATEWAY_URL [TOKEN]`` (or
with env ``KGD_URL`` / ``KGD_TOKEN``); it prints one JSON object.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

SCENARIO_TIMEOUT = 150.0  # the whole scenario, server start and stop included
SERVER_START_TIMEOUT = 60.0
STEP_TIMEOUT = 45.0  # one REST call or one execute round trip
RECONNECT_TIMEOUT = 60.0  # jupyter_server's reconnection to a restarted gateway (1, 2, 4, 8 s backoff)
INTERRUPT_BUDGET = 10.0  # interrupt to KeyboardInterrupt reply; the cell never ends by itself
SERVER_STOP_TIMEOUT = 20.0
POLL_INTERVAL = 0.1
NUDGE_INTERVAL = 1.0  # resend kernel_info_request if iopub stays silent this long
LOG_TAIL_LINES = 30


class ScenarioError(Exception):
    """The gateway (through jupyter_server) did not behave like the reference."""


class _Deadline:
    """A monotonic deadline that bounds every wait of one scenario run."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds

    def timeout(self, step: float) -> float:
        """The time left for one step: at most `step`, never past the deadline."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise ScenarioError("scenario deadline exceeded")
        return min(step, left)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(
    method: str,
    url: str,
    token: str,
    timeout: float,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any]:
    """One JSON request; returns (status, decoded body or None). Never raises on 4xx/5xx."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"token {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


def _expect(what: str, status: int, expected: int, body: Any) -> Any:
    if status != expected:
        raise ScenarioError(f"{what}: expected HTTP {expected}, got {status}: {body!r}")
    return body


class _JupyterServer:
    """A `jupyter server --gateway-url` subprocess isolated in its own directories."""

    def __init__(self, workdir: Path, gateway_url: str, gateway_token: str) -> None:
        self.port = _free_loopback_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "jupyter_server.log"
        root = workdir / "root"
        root.mkdir()
        env = {
            name: value
            for name, value in os.environ.items()
            # Machine-level gateway settings would override ours, and KERNEL_*
            # variables would be forwarded to the gateway in every kernel start.
            if not name.startswith(("JUPYTER_", "KERNEL_"))
        }
        env.update(
            JUPYTER_CONFIG_DIR=str(workdir / "config"),
            JUPYTER_DATA_DIR=str(workdir / "data"),
            JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
            # Also skip the site-wide config path (server extensions installed
            # on this machine); jupyter_core then uses a fresh dir under TMPDIR.
            JUPYTER_NO_CONFIG="1",
            TMPDIR=str(workdir),
        )
        argv = [
            sys.executable,
            "-m",
            "jupyter_server",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.open_browser=False",
            "--ServerApp.allow_root=True",  # CI runs as root
            f"--ServerApp.root_dir={root}",
            f"--gateway-url={gateway_url}",
            f"--GatewayClient.auth_token={gateway_token}",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def log_tail(self) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def wait_ready(self, deadline: _Deadline) -> None:
        """Poll `GET /api` until it answers 200 or the server exits."""
        end = time.monotonic() + deadline.timeout(SERVER_START_TIMEOUT)
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise ScenarioError(f"jupyter server exited with {self.process.returncode}")
            try:
                if _http("GET", f"{self.url}/api", self.token, timeout=2.0)[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            try:  # wait for the next poll, or for the server to exit, whichever comes first
                self.process.wait(POLL_INTERVAL)
            except subprocess.TimeoutExpired:
                pass
        raise ScenarioError(f"jupyter server not ready in {SERVER_START_TIMEOUT} s")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after a grace period; always reaps the process."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class _KernelChannels:
    """The kernel WebSocket of jupyter_server, legacy JSON framing.

    jupyter_server forces the legacy protocol when it proxies to a gateway, so
    no subprotocol is offered here either.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._session = uuid.uuid4().hex

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": msg_type,
            "username": "kgd-scenario",
            "session": self._session,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.3",
        }
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": channel}
        self._ws.send(json.dumps(message))
        return msg_id

    def _reply_before(self, msg_id: str, end: float) -> dict[str, Any] | None:
        """The next message whose parent is `msg_id`, or None at monotonic time `end`."""
        while (left := end - time.monotonic()) > 0:
            try:
                message = json.loads(self._ws.recv(timeout=left))
            except TimeoutError:
                return None
            if message.get("parent_header", {}).get("msg_id") == msg_id:
                return dict(message)
        return None

    def next_reply(self, msg_id: str, end: float) -> dict[str, Any]:
        """The next message whose parent is `msg_id`; ScenarioError at monotonic time `end`."""
        message = self._reply_before(msg_id, end)
        if message is None:
            raise ScenarioError(f"the kernel did not finish answering {msg_id} in time")
        return message

    def wait_reachable(self, timeout: float) -> int:
        """Send kernel_info_request until one shows up on iopub; return how many were sent.

        A kernel's iopub subscription is only live some time after the kernel
        (re)starts, and iopub output published before that is lost (observed
        with the reference gateway right after a REST restart: execute_reply
        arrives, its stream output never does). Real clients wait for
        kernel_info first; this does the same, like the server's own "nudge".
        """
        end = time.monotonic() + timeout
        attempts = 0
        while time.monotonic() < end:
            attempts += 1
            msg_id = self.send("kernel_info_request", {})
            attempt_end = min(end, time.monotonic() + NUDGE_INTERVAL)
            while (message := self._reply_before(msg_id, attempt_end)) is not None:
                if message["channel"] == "iopub":
                    return attempts
        raise ScenarioError(f"no iopub traffic after {attempts} kernel_info requests")

    def start_execute(self, code: str) -> str:
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        return self.send("execute_request", content)

    def finish_execute(self, msg_id: str, timeout: float) -> dict[str, Any]:
        """Collect stdout and the reply until both execute_reply and iopub idle arrived."""
        end = time.monotonic() + timeout
        observed: dict[str, Any] = {"stream": "", "status": None, "ename": None}
        idle = False
        while not (idle and observed["status"] is not None):
            message = self.next_reply(msg_id, end)
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content.get("name") == "stdout":
                observed["stream"] += content["text"]
            elif kind == "execute_reply":
                observed["status"] = content["status"]
                observed["ename"] = content.get("ename")
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        return observed

    def execute(self, code: str, timeout: float) -> dict[str, Any]:
        return self.finish_execute(self.start_execute(code), timeout)

    def wait_for_stdout(self, msg_id: str, text: str, timeout: float) -> None:
        """Block until the running cell `msg_id` has printed `text`."""
        end = time.monotonic() + timeout
        while True:
            message = self.next_reply(msg_id, end)
            if message["msg_type"] == "stream" and text in message["content"]["text"]:
                return


@contextmanager
def _kernel_channels(server: _JupyterServer, kernel_id: str, timeout: float) -> Iterator[_KernelChannels]:
    url = f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4()}"
    with connect(
        url,
        additional_headers={"Authorization": f"token {server.token}"},
        open_timeout=timeout,
        close_timeout=5,
    ) as ws:
        yield _KernelChannels(ws)


def _kernel_scenario(server: _JupyterServer, deadline: _Deadline, started: list[str]) -> dict[str, Any]:
    """The client steps; appends the id of the kernel it starts to `started`."""
    out: dict[str, Any] = {}
    api = f"{server.url}/api"

    def call(method: str, path: str, expected: int, body: dict[str, Any] | None = None) -> Any:
        status, answer = _http(method, api + path, server.token, deadline.timeout(STEP_TIMEOUT), body)
        return _expect(f"{method} {path}", status, expected, answer)

    specs = call("GET", "/kernelspecs", 200)
    out["kernelspecs"] = sorted(specs["kernelspecs"])
    out["default_kernelspec"] = specs["default"]

    kernel = call("POST", "/kernels", 201, {"name": "python3"})
    kernel_id = kernel["id"]
    started.append(kernel_id)
    out["kernel_name"] = kernel["name"]
    out["listed"] = kernel_id in [model["id"] for model in call("GET", "/kernels", 200)]

    with _kernel_channels(server, kernel_id, deadline.timeout(STEP_TIMEOUT)) as channels:
        out["kernel_info_requests"] = {"connect": channels.wait_reachable(deadline.timeout(STEP_TIMEOUT))}
        hello = channels.execute("print('hello from jupyter_server')", deadline.timeout(STEP_TIMEOUT))
        out["stream"] = hello["stream"]
        channels.execute("kgd_marker = 1", deadline.timeout(STEP_TIMEOUT))

        waiter = channels.start_execute("import threading\nprint('waiting', flush=True)\nthreading.Event().wait()")
        channels.wait_for_stdout(waiter, "waiting", deadline.timeout(STEP_TIMEOUT))
        interrupted_at = time.monotonic()
        call("POST", f"/kernels/{kernel_id}/interrupt", 204)
        interrupted = channels.finish_execute(waiter, deadline.timeout(INTERRUPT_BUDGET))
        out["interrupt"] = {
            "status": interrupted["status"],
            "ename": interrupted["ename"],
            "seconds": round(time.monotonic() - interrupted_at, 2),
        }

        restarted = call("POST", f"/kernels/{kernel_id}/restart", 200)
        out["restart_state"] = restarted["execution_state"]
        # Same WebSocket: the gateway keeps the connection across a REST restart.
        out["kernel_info_requests"]["restart"] = channels.wait_reachable(deadline.timeout(STEP_TIMEOUT))
        again = channels.execute("print('kgd_marker' in globals(), 6*7)", deadline.timeout(STEP_TIMEOUT))
        out["after_restart"] = {"status": again["status"], "stream": again["stream"]}

    call("DELETE", f"/kernels/{kernel_id}", 204)
    status, _ = _http("GET", f"{api}/kernels/{kernel_id}", server.token, deadline.timeout(STEP_TIMEOUT))
    out["deleted"] = status == 404
    return out


def _restart_scenario(
    server: _JupyterServer, deadline: _Deadline, started: list[str], restart_gateway: Callable[[], None]
) -> dict[str, Any]:
    """Set a variable, have the gateway restarted under jupyter_server, then read it on the same WebSocket."""
    out: dict[str, Any] = {}
    api = f"{server.url}/api"

    def call(method: str, path: str, expected: int, body: dict[str, Any] | None = None) -> Any:
        status, answer = _http(method, api + path, server.token, deadline.timeout(STEP_TIMEOUT), body)
        return _expect(f"{method} {path}", status, expected, answer)

    kernel_id = call("POST", "/kernels", 201, {"name": "python3"})["id"]
    started.append(kernel_id)
    out["kernel_id"] = kernel_id
    with _kernel_channels(server, kernel_id, deadline.timeout(STEP_TIMEOUT)) as channels:
        channels.wait_reachable(deadline.timeout(STEP_TIMEOUT))
        channels.execute("kgd_marker = 42", deadline.timeout(STEP_TIMEOUT))
        restart_gateway()
        # jupyter_server reconnects to the gateway on its own (gateway_retry_interval, with backoff).
        channels.wait_reachable(deadline.timeout(RECONNECT_TIMEOUT))
        again = channels.execute("print(kgd_marker)", deadline.timeout(STEP_TIMEOUT))
        out["after_restart"] = {"status": again["status"], "stream": again["stream"]}
    out["listed"] = kernel_id in [model["id"] for model in call("GET", "/kernels", 200)]
    call("DELETE", f"/kernels/{kernel_id}", 204)
    return out


def run_gateway_client_scenario(gateway_url: str, gateway_token: str) -> dict[str, Any]:
    """Drive a gateway through a real `jupyter server --gateway-url`; return what was observed.

    Raises ScenarioError (with the jupyter server log tail) when a step fails.
    """
    return _run(gateway_url, gateway_token, _kernel_scenario)


def run_restart_scenario(gateway_url: str, gateway_token: str, restart_gateway: Callable[[], None]) -> dict[str, Any]:
    """Through `jupyter server --gateway-url`: a kernel's state across a gateway restart (``restart_gateway`` blocks until the new one is ready)."""
    return _run(
        gateway_url,
        gateway_token,
        lambda server, deadline, started: _restart_scenario(server, deadline, started, restart_gateway),
    )


def _run(gateway_url: str, gateway_token: str, scenario: Callable[[_JupyterServer, _Deadline, list[str]], dict[str, Any]]) -> dict[str, Any]:
    """Start jupyter_server in front of the gateway, run ``scenario``, check its kernel is gone on the gateway too."""
    deadline = _Deadline(SCENARIO_TIMEOUT)
    gateway_api = gateway_url.rstrip("/") + "/api"
    with tempfile.TemporaryDirectory(prefix="kgd-gateway-client-") as tmp:
        server = _JupyterServer(Path(tmp), gateway_url, gateway_token)
        started: list[str] = []
        try:
            server.wait_ready(deadline)
            out = scenario(server, deadline, started)
            # The delete must have reached the gateway, not just jupyter_server.
            status, _ = _http(
                "GET", f"{gateway_api}/kernels/{started[0]}", gateway_token, deadline.timeout(STEP_TIMEOUT)
            )
            out["gateway_kernel_gone"] = status == 404
            started.clear()
            return out
        except (ScenarioError, OSError, KeyError, TimeoutError) as error:
            raise ScenarioError(f"{error}\n--- jupyter server log tail ---\n{server.log_tail()}") from error
        finally:
            server.stop()
            _delete_leftovers(gateway_api, gateway_token, started)


def _delete_leftovers(gateway_api: str, gateway_token: str, kernel_ids: list[str]) -> None:
    """After a failed run, delete its kernels on the gateway directly (best effort)."""
    for kernel_id in kernel_ids:
        try:
            _http("DELETE", f"{gateway_api}/kernels/{kernel_id}", gateway_token, STEP_TIMEOUT)
        except OSError:
            pass  # the gateway is down or unreachable; nothing more to do from here


def main(argv: list[str]) -> int:
    gateway_url = argv[1] if len(argv) > 1 else os.environ.get("KGD_URL", "")
    gateway_token = argv[2] if len(argv) > 2 else os.environ.get("KGD_TOKEN", "")
    if not gateway_url:
        print("usage: gateway_client.py GATEWAY_URL [TOKEN]  (or env KGD_URL, KGD_TOKEN)", file=sys.stderr)
        return 2
    try:
        result = run_gateway_client_scenario(gateway_url, gateway_token)
    except ScenarioError as error:
        print(json.dumps({"error": str(error)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
