"""Tests for kgd.personalities.notebook_http.execution: one kernel's executions, without a kernel.

A ``ScriptedKernel`` stands in for ``kgd.kernels.kernel.Kernel``: it records
what the executor sends and lets each test play the kernel's replies and
iopub messages (real ``RawMessage`` objects, parented on the request).
test_routes runs the same code on real ipykernel kernels.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels import messages
from kgd.kernels.kernel import KernelGone
from kgd.kernels.seed import SeedFailed
from kgd.personalities.notebook_http.execution import GatewayStopping, KernelExecutor, KernelLost
from kgd.personalities.notebook_http.outputs import ExecutionOutcome


class ScriptedClient:
    """The executor's shell/control/stdin sockets: records what is sent."""

    def __init__(self, kernel: "ScriptedKernel", receive: Callable[[str, messages.RawMessage], None]) -> None:
        self.kernel = kernel
        self.receive = receive
        self.closed = False

    def send(self, channel: str, message: messages.RawMessage) -> None:
        if self.closed:
            raise KernelGone(self.kernel.kernel_id)
        self.kernel.sent.append((channel, message))

    def close(self) -> None:
        self.closed = True


class ScriptedKernel:
    """Just enough of a Kernel for an executor; the test plays the kernel's side."""

    kernel_id = "k1"

    def __init__(self) -> None:
        self.sent: list[tuple[str, messages.RawMessage]] = []
        self.listeners: list[Callable[[messages.RawMessage], None]] = []
        self.client_: ScriptedClient | None = None
        self.interrupts = 0
        self.gone = False

    def client(self, receive: Callable[[str, messages.RawMessage], None]) -> ScriptedClient:
        self.client_ = ScriptedClient(self, receive)
        return self.client_

    def add_iopub_listener(self, listener: Callable[[messages.RawMessage], None]) -> None:
        self.listeners.append(listener)

    def remove_iopub_listener(self, listener: Callable[[messages.RawMessage], None]) -> None:
        self.listeners.remove(listener)

    def interrupt(self) -> None:
        self.interrupts += 1

    # -- the kernel's side ------------------------------------------------------

    def request(self, index: int = -1) -> tuple[messages.RawMessage, dict[str, Any]]:
        _, message = self.sent[index]
        return message, json.loads(message.content)

    def iopub(self, msg_type: str, content: dict[str, Any], parent: messages.RawMessage | None = None) -> None:
        message = messages.new_message(msg_type, content, session="kernel", parent=parent)
        for listener in list(self.listeners):
            listener(message)

    def reply(self, parent: messages.RawMessage, status: str = "ok") -> None:
        assert self.client_ is not None
        self.client_.receive("shell", messages.new_message("execute_reply", {"status": status}, session="kernel", parent=parent))

    def run(self, parent: messages.RawMessage, *outputs: tuple[str, dict[str, Any]]) -> None:
        """Busy, the outputs, the reply, idle: one whole execution."""
        self.iopub("status", {"execution_state": "busy"}, parent)
        for msg_type, content in outputs:
            self.iopub(msg_type, content, parent)
        self.reply(parent)
        self.iopub("status", {"execution_state": "idle"}, parent)


def stdout(text: str) -> tuple[str, dict[str, Any]]:
    return ("stream", {"name": "stdout", "text": text})


def make() -> tuple[KernelExecutor, ScriptedKernel, Clock, list[str]]:
    kernel, clock, shut = ScriptedKernel(), Clock(), []
    executor = KernelExecutor(kernel, clock, shutdown_kernel=shut.append)  # type: ignore[arg-type]
    return executor, kernel, clock, shut


class ExecuteTests(SynchronousTestCase):
    """What one execute_request asks and what its outcome is."""

    def test_request_content(self) -> None:
        """No stdin (input() fails instead of hanging), no history, no abort of queued requests."""
        executor, kernel, _, _ = make()
        executor.execute("1 + 1")
        channel, content = kernel.sent[0][0], kernel.request()[1]
        self.assertEqual(channel, "shell")
        self.assertEqual(
            (content["code"], content["allow_stdin"], content["store_history"], content["stop_on_error"]),
            ("1 + 1", False, False, False),
        )

    def test_outputs_of_other_requests_are_ignored(self) -> None:
        """Only iopub messages parented on this request count; it ends on its idle."""
        executor, kernel, _, _ = make()
        done = executor.execute("print('mine')")
        mine, _ = kernel.request()
        stranger = messages.new_message("execute_request", {}, session="someone")
        kernel.iopub("stream", {"name": "stdout", "text": "theirs\n"}, stranger)
        kernel.iopub("status", {"execution_state": "idle"}, stranger)
        self.assertNoResult(done)
        kernel.run(mine, ("execute_input", {"code": "..."}), stdout("mine\n"))
        self.assertEqual(self.successResultOf(done), ExecutionOutcome("mine\n"))

    def test_missing_idle_ends_after_the_grace(self) -> None:
        """If idle never comes after the reply, the execution ends with what arrived."""
        executor, kernel, clock, _ = make()
        done = executor.execute("print(1)")
        message, _ = kernel.request()
        kernel.iopub("stream", {"name": "stdout", "text": "1\n"}, message)
        kernel.reply(message)
        self.assertNoResult(done)
        clock.advance(2)
        self.assertEqual(self.successResultOf(done).text, "1\n")

    def test_aborted_reply_is_an_error(self) -> None:
        """A request the kernel aborted ends at once as an error."""
        executor, kernel, _, _ = make()
        done = executor.execute("x")
        kernel.reply(kernel.request()[0], status="aborted")
        self.assertIn("Aborted", self.successResultOf(done).error or "")


class LossTests(SynchronousTestCase):
    """A kernel that goes away fails pending work at once."""

    def test_death_broadcast_fails_pending_work(self) -> None:
        """The gateway's 'restarting' status (the process died) fails the request and fires lost."""
        executor, kernel, _, _ = make()
        done = executor.execute("import os; os._exit(1)")
        kernel.iopub("status", {"execution_state": "restarting"})
        self.failureResultOf(done, KernelLost)
        self.assertIn("died", self.successResultOf(executor.lost))
        self.assertEqual(kernel.listeners, [])
        self.assertTrue(kernel.client_ and kernel.client_.closed)
        self.failureResultOf(executor.execute("1"), KernelLost)

    def test_shutdown_reply_means_lost(self) -> None:
        """A kernel shut down by someone else (its shutdown_reply on iopub) is lost."""
        executor, kernel, _, _ = make()
        kernel.iopub("shutdown_reply", {"status": "ok", "restart": False})
        self.assertIn("shut down", self.successResultOf(executor.lost))
        self.assertFalse(executor.usable)

    def test_retire_shuts_the_kernel_down_once(self) -> None:
        """retire() fails pending work and asks for the kernel's shutdown, later and once."""
        executor, kernel, clock, shut = make()
        done = executor.execute("1")
        executor.retire("stuck")
        executor.retire("stuck again")
        self.failureResultOf(done, KernelLost)
        self.assertEqual(shut, [])
        clock.advance(0)
        self.assertEqual(shut, ["k1"])

    def test_close_is_gateway_stopping(self) -> None:
        """Closing (the daemon stops) fails pending work as GatewayStopping, without a shutdown."""
        executor, kernel, clock, shut = make()
        done = executor.execute("1")
        executor.close()
        self.failureResultOf(done, GatewayStopping)
        clock.advance(0)
        self.assertEqual(shut, [])


class RespondTests(SynchronousTestCase):
    """respond(): REQUEST, the endpoint, then ResponseInfo, as one HTTP response."""

    def test_assignment_and_endpoint_are_pipelined(self) -> None:
        """Both are sent at once; ResponseInfo only after the endpoint succeeded."""
        executor, kernel, _, _ = make()
        answer = executor.respond("REQUEST = '{}'", "# GET /x\nprint('hi')", "# ResponseInfo GET /x\nprint('{}')")
        self.assertEqual([json.loads(m.content)["code"] for _, m in kernel.sent], ["REQUEST = '{}'", "# GET /x\nprint('hi')"])
        self.assertTrue(json.loads(kernel.sent[0][1].content)["silent"])
        kernel.run(kernel.request(0)[0])
        kernel.run(kernel.request(1)[0], stdout("hi\n"))
        self.assertEqual(len(kernel.sent), 3)
        kernel.run(kernel.request(2)[0], stdout('{"status": 201, "headers": {"X-Kind": "test"}}'))
        response = self.successResultOf(answer)
        self.assertEqual((response.status, response.header("X-Kind"), response.body), (201, "test", b"hi\n"))

    def test_endpoint_error_skips_response_info(self) -> None:
        """An endpoint error is a 500 with its name and value; ResponseInfo does not run."""
        executor, kernel, _, _ = make()
        answer = executor.respond(None, "# GET /x\n1/0", "# ResponseInfo GET /x\nprint('{}')")
        kernel.run(kernel.request(0)[0], ("error", {"ename": "ZeroDivisionError", "evalue": "division by zero"}))
        response = self.successResultOf(answer)
        self.assertEqual((response.status, response.body), (500, b"Error ZeroDivisionError: division by zero \n"))
        self.assertEqual(len(kernel.sent), 1)

    def test_death_mid_request(self) -> None:
        """The kernel dying while the endpoint runs fails the response with KernelLost at once."""
        executor, kernel, _, _ = make()
        answer = executor.respond(None, "# GET /die\nimport os; os._exit(1)", None)
        kernel.iopub("status", {"execution_state": "busy"}, kernel.request(0)[0])
        kernel.iopub("status", {"execution_state": "dead"})
        self.failureResultOf(answer, KernelLost)


class SeedTests(SynchronousTestCase):
    """Seeding: cells in order, the first failure or a too-long cell stops it."""

    def test_cells_in_order_then_done(self) -> None:
        """Each seed cell is sent only after the previous one finished."""
        executor, kernel, _, _ = make()
        seeded = executor.seed(("a = 1", "b = 2"))
        self.assertEqual(len(kernel.sent), 1)
        kernel.run(kernel.request(0)[0])
        self.assertEqual(kernel.request(1)[1]["code"], "b = 2")
        kernel.run(kernel.request(1)[0])
        self.successResultOf(seeded)

    def test_failure_names_the_cell(self) -> None:
        """A failing cell fails seeding with its number, first line and error."""
        executor, kernel, _, _ = make()
        seeded = executor.seed(("import not_a_module",))
        kernel.run(kernel.request(0)[0], ("error", {"ename": "ModuleNotFoundError", "evalue": "No module named 'not_a_module'"}))
        message = str(self.failureResultOf(seeded, SeedFailed).value)
        self.assertIn("seed cell 1 ('import not_a_module')", message)
        self.assertIn("ModuleNotFoundError", message)

    def test_timeout(self) -> None:
        """A cell running past the timeout fails seeding instead of waiting forever."""
        executor, kernel, clock, _ = make()
        seeded = executor.seed(("import threading; threading.Event().wait()",), timeout=5)
        clock.advance(5)
        self.assertIn("ran longer than 5 seconds", str(self.failureResultOf(seeded, SeedFailed).value))
        kernel.run(kernel.request(0)[0])  # the cell ending late is harmless
