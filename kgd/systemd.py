"""Telling systemd how kgd is doing: the ``sd_notify`` protocol, written here.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET``, the path of a Unix
datagram socket (``@name`` for Linux's abstract namespace).  kgd sends
newline-separated ``KEY=value`` assignments to it::

    READY=1\\nSTATUS=serving 2 kernels      once listening and prespawned kernels are up
    STATUS=serving 3 kernels                 when the number changes
    STOPPING=1\\nSTATUS=stopping             when shutdown begins

``NotifyService`` is the last child of the service tree, so it starts after
every listener (endpoints such as ``tcp:`` and ``systemd:`` listen in
``startService``; a failure to listen stops twistd before this point).
Without ``NOTIFY_SOCKET`` everything here is a no-op.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, MutableMapping

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from kgd.readiness import Readiness

log = Logger()


def socket_address(value: str) -> str:
    """The address to send to: ``@name`` is ``\\0name`` in the abstract namespace."""
    return "\0" + value[1:] if value.startswith("@") else value


def message(**fields: str) -> bytes:
    """One notification: ``KEY=value`` lines, keys upper-cased, in the order given."""
    return "\n".join(f"{key.upper()}={value}" for key, value in fields.items()).encode("utf-8")


class Notifier:
    """Sends notifications to systemd's socket; does nothing without one."""

    def __init__(self, address: str | None) -> None:
        self.address = socket_address(address) if address else None
        self._warned = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str]) -> "Notifier":
        """Take ``NOTIFY_SOCKET`` out of ``environ`` so kernels never inherit it."""
        return cls(environ.pop("NOTIFY_SOCKET", None))

    @property
    def enabled(self) -> bool:
        """True when systemd (or a test) listens for notifications."""
        return self.address is not None

    def notify(self, **fields: str) -> None:
        """Send one notification; a failure is logged once and never raised."""
        if self.address is None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.sendto(message(**fields), self.address)
        except OSError as error:
            if not self._warned:
                self._warned = True
                log.warn("could not notify systemd at {address!r}: {error}", address=self.address, error=error)
        finally:
            sock.close()


class NotifyService(Service):
    """READY=1 once every readiness condition holds, STATUS while serving, STOPPING=1 on stop."""

    def __init__(
        self,
        notifier: Notifier,
        readiness: Readiness,
        kernel_count: Callable[[], int],
        clock: Any,
        status_interval: float = 10.0,
    ) -> None:
        self._notifier = notifier
        self._readiness = readiness
        self._kernel_count = kernel_count
        self._clock = clock
        self._status_interval = status_interval
        self._status = ""
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._readiness.done("listening")
        if not self._readiness.ready:
            self._notifier.notify(status="starting: waiting for " + ", ".join(self._readiness.pending()))
        self._readiness.when_ready().addCallback(self._ready)

    def _ready(self, _: None) -> None:
        if not self.running:
            return
        self._status = self._serving()
        self._notifier.notify(ready="1", status=self._status)
        log.info("kgd is ready: {status}", status=self._status, event="ready")
        if self._notifier.enabled:
            self._loop = LoopingCall(self._update_status)
            self._loop.clock = self._clock
            self._loop.start(self._status_interval, now=False)

    def _serving(self) -> str:
        count = self._kernel_count()
        return f"serving {count} kernel{'' if count == 1 else 's'}"

    def _update_status(self) -> None:
        status = self._serving()
        if status != self._status:
            self._status = status
            self._notifier.notify(status=status)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._notifier.notify(stopping="1", status="stopping: shutting kernels down")
