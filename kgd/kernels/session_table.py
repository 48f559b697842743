"""Jupyter Server's session table kept in this daemon's memory: the ``ISessionTable`` of a lone daemon.

A session ties a document (``path``, ``name``, ``type``) to a kernel.
``SessionStore`` is the pure table (nothing persists across restarts, as in
the reference); ``MemorySessionTable`` gives it the asynchronous
``ISessionTable`` face that replicas' shared table
(``kgd.kernels.redis_sessions``) also has, so the sessions routes are
written once for both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping

from twisted.internet import defer
from zope.interface import implementer

from kgd.interfaces import ISessionTable

#: The fields of a session that may change.
_MUTABLE_FIELDS = frozenset({"path", "name", "type", "kernel_id"})


class UnknownSession(LookupError):
    """No session has this id."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"Session not found: {session_id}")
        self.session_id = session_id


@dataclass(frozen=True)
class NotebookSession:
    """One row of the session table."""

    session_id: str
    path: str
    name: str
    type: str
    kernel_id: str


def new_session_id() -> str:
    """A fresh session id, as Jupyter Server makes them (a UUID4)."""
    return str(uuid.uuid4())


def changed(session: NotebookSession, changes: Mapping[str, str]) -> NotebookSession:
    """``session`` with some of ``path``, ``name``, ``type``, ``kernel_id`` changed; any other field is a TypeError."""
    unknown = set(changes) - _MUTABLE_FIELDS
    if unknown:
        raise TypeError(f"not session fields: {sorted(unknown)}")
    return replace(session, **changes)


class SessionStore:
    """Sessions by id, in creation order; pure data, no I/O."""

    def __init__(self, new_id: Callable[[], str] = new_session_id) -> None:
        self._sessions: dict[str, NotebookSession] = {}
        self._new_id = new_id

    def create(self, path: str, name: str, type: str, kernel_id: str) -> NotebookSession:
        """Add a session and return it."""
        session = NotebookSession(self._new_id(), path, name, type, kernel_id)
        self._sessions[session.session_id] = session
        return session

    def get(self, session_id: str) -> NotebookSession:
        """The session with this id; ``UnknownSession`` if there is none."""
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSession(session_id) from None

    def find_by_path(self, path: str) -> NotebookSession | None:
        """The session for a document path, if any."""
        return next((s for s in self._sessions.values() if s.path == path), None)

    def list(self) -> list[NotebookSession]:
        """Every session, oldest first."""
        return list(self._sessions.values())

    def update(self, session_id: str, **changes: str) -> NotebookSession:
        """Change some of ``path``, ``name``, ``type``, ``kernel_id``; return the new row."""
        session = changed(self.get(session_id), changes)
        self._sessions[session_id] = session
        return session

    def delete(self, session_id: str) -> NotebookSession:
        """Remove a session and return it; ``UnknownSession`` if there is none."""
        session = self.get(session_id)
        del self._sessions[session_id]
        return session

    def uses_kernel(self, kernel_id: str) -> bool:
        """True if some session is bound to this kernel."""
        return any(s.kernel_id == kernel_id for s in self._sessions.values())

    def forget_kernels(self, kernel_ids: Iterable[str]) -> list[NotebookSession]:
        """Drop sessions bound to one of ``kernel_ids`` (kernels that are gone); return them."""
        gone = set(kernel_ids)
        dropped = [s for s in self._sessions.values() if s.kernel_id in gone]
        for session in dropped:
            del self._sessions[session.session_id]
        return dropped


@implementer(ISessionTable)
class MemorySessionTable:
    """``ISessionTable`` over a ``SessionStore``: every answer is an already fired Deferred."""

    def __init__(self, store: SessionStore | None = None) -> None:
        self.store = store or SessionStore()

    def add(self, path: str, name: str, type: str, kernel_id: str) -> defer.Deferred[tuple[NotebookSession, bool]]:
        existing = self.store.find_by_path(path)
        if existing is not None:
            return defer.succeed((existing, False))
        return defer.succeed((self.store.create(path, name, type, kernel_id), True))

    def get(self, session_id: str) -> defer.Deferred[NotebookSession]:
        return defer.maybeDeferred(self.store.get, session_id)

    def find_by_path(self, path: str) -> defer.Deferred[NotebookSession | None]:
        return defer.succeed(self.store.find_by_path(path))

    def list(self) -> defer.Deferred[list[NotebookSession]]:
        return defer.succeed(self.store.list())

    def update(self, session_id: str, changes: Mapping[str, Any]) -> defer.Deferred[NotebookSession]:
        return defer.maybeDeferred(lambda: self.store.update(session_id, **changes))

    def remove(self, session_id: str) -> defer.Deferred[NotebookSession]:
        return defer.maybeDeferred(self.store.delete, session_id)

    def uses_kernel(self, kernel_id: str) -> defer.Deferred[bool]:
        return defer.succeed(self.store.uses_kernel(kernel_id))

    def forget_kernels(self, kernel_ids: Iterable[str]) -> defer.Deferred[list[NotebookSession]]:
        return defer.succeed(self.store.forget_kernels(kernel_ids))
