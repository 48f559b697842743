"""What replicas tell each other about kernels, as versioned JSON messages.

Published on one channel that every replica subscribes to
(``<prefix>events``), one message per event::

    {"v": 1, "kind": "kernel_deleted",    "kernel_id": "...", "origin": "replica-a"}
    {"v": 1, "kind": "kernel_dead",       "kernel_id": "...", "origin": "replica-a", "reason": "..."}
    {"v": 1, "kind": "kernel_restarting", "kernel_id": "...", "origin": "replica-a"}
    {"v": 1, "kind": "kernel_restarted",  "kernel_id": "...", "origin": "replica-a"}
    {"v": 1, "kind": "request", "kernel_id": "...", "origin": "replica-b",
     "target": "replica-a", "action": "interrupt|restart|shutdown", "request_id": "..."}
    {"v": 1, "kind": "reply",   "kernel_id": "...", "origin": "replica-a",
     "target": "replica-b", "request_id": "...", "ok": true, "reason": null}

A request asks the kernel's owner (``target``) to do what needs the kernel
process itself; the owner answers with a reply to the requester.
``decode_event`` refuses anything else with ``BadEvent``, so a replica
running another version ignores what it cannot read instead of misreading it.
``PendingRequests`` matches replies to requests and fails a request nobody
answers within a deadline (clock passed in).  No I/O here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

EVENT_VERSION = 1
BROADCASTS = ("kernel_deleted", "kernel_dead", "kernel_restarting", "kernel_restarted")
ACTIONS = ("interrupt", "restart", "shutdown")
KINDS = BROADCASTS + ("request", "reply")


class BadEvent(ValueError):
    """Bytes that are not an event this version of kgd understands."""


class NoReply(Exception):
    """The kernel's owner did not answer a request within the deadline."""


@dataclass(frozen=True)
class ReplicaEvent:
    """One message between replicas; the fields beyond ``kernel_id`` and ``origin`` depend on ``kind``."""

    kind: str
    kernel_id: str
    origin: str
    target: str | None = None
    action: str | None = None
    request_id: str | None = None
    ok: bool | None = None
    reason: str | None = None


def request(origin: str, owner: str, kernel_id: str, action: str, request_id: str) -> ReplicaEvent:
    """Ask ``owner`` to interrupt, restart or shut down ``kernel_id``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return ReplicaEvent("request", kernel_id, origin, target=owner, action=action, request_id=request_id)


def reply(to: ReplicaEvent, origin: str, ok: bool, reason: str | None = None) -> ReplicaEvent:
    """The owner's answer to the request ``to``."""
    return ReplicaEvent("reply", to.kernel_id, origin, target=to.origin, request_id=to.request_id, ok=ok, reason=reason)


def encode_event(event: ReplicaEvent) -> bytes:
    """The event as compact JSON; optional fields only when set."""
    data: dict[str, Any] = {"v": EVENT_VERSION, "kind": event.kind, "kernel_id": event.kernel_id, "origin": event.origin}
    for name in ("target", "action", "request_id", "ok", "reason"):
        value = getattr(event, name)
        if value is not None:
            data[name] = value
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode_event(raw: bytes | str) -> ReplicaEvent:
    """Parse and check one event; ``BadEvent`` says what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise BadEvent(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise BadEvent("not a JSON object")
    if data.get("v") != EVENT_VERSION:
        raise BadEvent(f"unknown event version {data.get('v')!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise BadEvent(f"unknown event kind {kind!r}")
    event = ReplicaEvent(
        kind=kind,
        kernel_id=_field(data, "kernel_id", str, required=True),
        origin=_field(data, "origin", str, required=True),
        target=_field(data, "target", str, required=kind in ("request", "reply")),
        action=_field(data, "action", str, required=kind == "request"),
        request_id=_field(data, "request_id", str, required=kind in ("request", "reply")),
        ok=_field(data, "ok", bool, required=kind == "reply"),
        reason=_field(data, "reason", str, required=False),
    )
    if event.action is not None and event.action not in ACTIONS:
        raise BadEvent(f"unknown action {event.action!r}")
    return event


def _field(data: dict[str, Any], name: str, kind: type, required: bool) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise BadEvent(f"missing field {name!r}")
        return None
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise BadEvent(f"field {name!r} has the wrong type")
    return value


class PendingRequests:
    """Requests this replica sent to kernel owners, waiting for their replies."""

    def __init__(self, origin: str, clock: IReactorTime, timeout: float) -> None:
        self._origin = origin
        self._clock = clock
        self._timeout = timeout
        self._waiting: dict[str, defer.Deferred[ReplicaEvent]] = {}

    def expect(self, sent: ReplicaEvent) -> defer.Deferred[ReplicaEvent]:
        """Fire with the reply to ``sent``, or fail with ``NoReply`` after the timeout."""
        assert sent.request_id is not None
        request_id = sent.request_id
        waiting: defer.Deferred[ReplicaEvent] = defer.Deferred()
        self._waiting[request_id] = waiting

        def no_reply(failure: Any, timeout: float) -> None:
            raise NoReply(f"replica {sent.target} did not answer {sent.action} of kernel {sent.kernel_id} within {timeout} s")

        waiting.addTimeout(self._timeout, self._clock, onTimeoutCancel=no_reply)
        waiting.addBoth(self._forget, request_id)
        return waiting

    def _forget(self, result: Any, request_id: str) -> Any:
        self._waiting.pop(request_id, None)
        return result

    def received(self, event: ReplicaEvent) -> bool:
        """Deliver a reply addressed to this replica; True if it answered a pending request."""
        if event.kind != "reply" or event.target != self._origin:
            return False
        waiting = self._waiting.get(event.request_id or "")
        if waiting is None:
            return False
        waiting.callback(event)
        return True
