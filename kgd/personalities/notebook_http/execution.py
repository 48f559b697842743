"""Run notebook code on one kernel of the notebook-http pool.

A ``KernelExecutor`` owns one kernel's client sockets (a ``KernelClient``,
opened once and kept for the kernel's life) and listens to its iopub
stream.  It sends ``execute_request`` messages and feeds the iopub messages
whose parent is one of them to an ``OutputCollector``; an execution is
finished when the kernel reports ``idle`` for it.

What it guards against, so that no HTTP request ever hangs on a kernel:

* the kernel dies (the gateway's ``restarting``/``dead`` status broadcast)
  or shuts down (ipykernel broadcasts its ``shutdown_reply`` on iopub):
  every pending execution fails with ``KernelLost`` at once, and ``lost``
  fires so the pool can replace the kernel;
* ``input()`` in a cell: requests are sent with ``allow_stdin=False``, so
  the cell raises instead of waiting for an answer nobody will give;
* a lost ``idle`` (iopub is a PUB/SUB stream and may drop under a flood):
  once the ``execute_reply`` has arrived, the execution is finished after
  ``reply_grace`` seconds even without ``idle``.

Requests use ``stop_on_error=False`` so that an error in one request never
makes the kernel abort the next request's already-queued executions, and
``store_history=False`` so that a kernel serving an API for weeks does not
keep every request's input and result in ``In``/``Out`` (the reference's
kernels grew without bound).
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from kgd.kernels import messages
from kgd.kernels.kernel import Kernel, KernelGone
from kgd.kernels.seed import run_seed_cells
from kgd.personalities.notebook_http.outputs import (
    ExecutionOutcome,
    HTTPResponse,
    OutputCollector,
    build_response,
)

log = Logger()

#: Status values the gateway itself broadcasts when a kernel process died.
_DEATH_STATES = frozenset({"restarting", "dead"})
#: The iopub messages an OutputCollector uses; others (execute_input,
#: display_data...) are dropped without decoding their content.
_COLLECTED = frozenset({"status", "stream", "execute_result", "error"})


class KernelLost(Exception):
    """The kernel died, shut down or was retired while code was running on it."""


class GatewayStopping(KernelLost):
    """The daemon is stopping; the request will not complete."""


class _Execution:
    """One execute_request in flight and what has come back for it."""

    __slots__ = ("collector", "done", "grace")

    def __init__(self) -> None:
        self.collector = OutputCollector()
        self.done: defer.Deferred[ExecutionOutcome] = defer.Deferred()
        self.grace: IDelayedCall | None = None


class KernelExecutor:
    """Executes code on one kernel, one caller at a time (the pool sees to that)."""

    def __init__(
        self,
        kernel: Kernel,
        clock: IReactorTime,
        *,
        shutdown_kernel: Callable[[str], Any] | None = None,
        reply_grace: float = 2.0,
    ) -> None:
        self.kernel = kernel
        self._clock = clock
        self._shutdown_kernel = shutdown_kernel
        self._reply_grace = reply_grace
        self._session = uuid.uuid4().hex
        self._pending: dict[str, _Execution] = {}
        self.lost: defer.Deferred[str] = defer.Deferred()
        self._retired = False
        self._client = kernel.client(self._shell_received)
        kernel.add_iopub_listener(self._iopub_received)

    @property
    def kernel_id(self) -> str:
        return self.kernel.kernel_id

    @property
    def closed(self) -> bool:
        return self.lost.called

    @property
    def usable(self) -> bool:
        """False once this executor or its kernel is gone (shut down by someone else, say)."""
        return not self.closed and not self.kernel.gone

    # -- executing -------------------------------------------------------------

    def execute(self, code: str, *, silent: bool = False) -> defer.Deferred[ExecutionOutcome]:
        """Run ``code``; fires with its outcome once the kernel is idle again."""
        if self.closed:
            return defer.fail(KernelLost(f"kernel {self.kernel_id} is gone"))
        content = {
            "code": code,
            "silent": silent,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        message = messages.new_message("execute_request", content, session=self._session)
        execution = _Execution()
        self._pending[message.msg_id] = execution
        try:
            self._client.send("shell", message)
        except KernelGone:
            self._lose(f"kernel {self.kernel_id} is gone")
        return execution.done

    def seed(self, cells: tuple[str, ...], timeout: float = 0.0) -> defer.Deferred[None]:
        """Run the seed cells in order (``run_seed_cells``); fails with ``SeedFailed``
        at the first error, or when a cell runs longer than ``timeout`` seconds (0: no limit)."""
        return run_seed_cells(cells, self._run_cell, self._clock, timeout)

    def _run_cell(self, code: str) -> defer.Deferred[str | None]:
        return self.execute(code).addCallback(lambda outcome: outcome.error.strip() if outcome.error is not None else None)

    def respond(
        self, assignment: str | None, source: str, response_source: str | None
    ) -> defer.Deferred[HTTPResponse]:
        """Answer one endpoint request: set REQUEST, run the endpoint, then its ResponseInfo.

        ``assignment`` is None when ``source`` already sets REQUEST itself
        (``request.code_with_request``).  Otherwise the assignment (silent)
        and the endpoint code are sent together: the kernel runs shell
        requests in order, so this saves a round trip without changing what
        the cell sees.  ResponseInfo runs only after the endpoint succeeded,
        as in the reference.
        """
        assigned: list[ExecutionOutcome] = []
        if assignment is not None:
            # A lost kernel is reported by the endpoint's Deferred, so drop it here.
            self.execute(assignment, silent=True).addCallbacks(assigned.append, lambda failure: None)
        endpoint = self.execute(source)
        result: defer.Deferred[HTTPResponse] = defer.Deferred()

        def endpoint_done(outcome: ExecutionOutcome) -> None:
            # The kernel ran the assignment first, so its outcome is known by now.
            if assigned and assigned[0].error is not None:
                result.callback(build_response(assigned[0]))
            elif response_source is None or outcome.error is not None:
                result.callback(build_response(outcome))
            else:
                self.execute(response_source).addCallbacks(
                    lambda info: result.callback(build_response(outcome, info)), result.errback
                )

        endpoint.addCallbacks(endpoint_done, result.errback)
        return result

    def interrupt(self) -> None:
        """Interrupt the running cell (a request ran past its timeout)."""
        try:
            self.kernel.interrupt()
        except KernelGone:
            self._lose(f"kernel {self.kernel_id} is gone")

    # -- ending ----------------------------------------------------------------

    def retire(self, reason: str) -> None:
        """Stop using this kernel and shut it down; pending work fails with ``KernelLost``."""
        self._lose(reason)
        if self._retired:
            return
        self._retired = True
        if self._shutdown_kernel is not None:
            # Not from inside a kernel callback: the kernel may be mid-autorestart.
            self._clock.callLater(0, self._shutdown_quietly)

    def _shutdown_quietly(self) -> None:
        assert self._shutdown_kernel is not None
        defer.maybeDeferred(self._shutdown_kernel, self.kernel_id).addErrback(lambda failure: None)

    def close(self) -> None:
        """Detach from the kernel without shutting it down (the daemon is stopping)."""
        self._lose("the gateway is shutting down", GatewayStopping)

    def _lose(self, reason: str, error: type[KernelLost] = KernelLost) -> None:
        if self.closed:
            return
        self.kernel.remove_iopub_listener(self._iopub_received)
        self._client.close()
        pending, self._pending = self._pending, {}
        for execution in pending.values():
            if execution.grace is not None and execution.grace.active():
                execution.grace.cancel()
            if not execution.done.called:
                execution.done.errback(error(reason))
        self.lost.callback(reason)

    # -- messages --------------------------------------------------------------

    def _iopub_received(self, message: messages.RawMessage) -> None:
        parent = message.parent_msg_id
        execution = self._pending.get(parent) if parent else None
        if execution is None:
            self._unsolicited(message)
            return
        if message.msg_type not in _COLLECTED:
            return
        if execution.collector.feed(message.msg_type, messages.parse_json_part(message.content)):
            self._finish(parent, execution)

    def _unsolicited(self, message: messages.RawMessage) -> None:
        """Watch for the kernel going away: a death broadcast or a shutdown."""
        if message.msg_type == "shutdown_reply":
            self._lose(f"kernel {self.kernel_id} was shut down")
        elif message.msg_type == "status" and not message.parent_msg_id:
            state = messages.parse_json_part(message.content).get("execution_state")
            if state in _DEATH_STATES:
                self._lose(f"kernel {self.kernel_id} died; the pool replaces it")

    def _shell_received(self, channel: str, message: messages.RawMessage) -> None:
        if channel != "shell" or message.msg_type != "execute_reply":
            return
        parent = message.parent_msg_id
        execution = self._pending.get(parent)
        if execution is None:
            return
        if messages.parse_json_part(message.content).get("status") == "aborted":
            execution.collector.feed("error", {"ename": "Aborted", "evalue": "the kernel aborted the execution"})
            self._finish(parent, execution)
        elif execution.grace is None:
            execution.grace = self._clock.callLater(self._reply_grace, self._idle_missing, parent)

    def _idle_missing(self, msg_id: str) -> None:
        execution = self._pending.get(msg_id)
        if execution is not None:
            log.warn(
                "kernel {kernel_id}: no idle status within {grace} s of the execute_reply; answering with the output received",
                kernel_id=self.kernel_id,
                grace=self._reply_grace,
            )
            execution.collector.done = True
            self._finish(msg_id, execution)

    def _finish(self, msg_id: str, execution: _Execution) -> None:
        self._pending.pop(msg_id, None)
        if execution.grace is not None and execution.grace.active():
            execution.grace.cancel()
        if not execution.done.called:  # a caller may have given up on it (a timeout)
            execution.done.callback(execution.collector.result())
