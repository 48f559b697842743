"""The bounded store of a disconnected session's messages, for replay on reconnect.

When a client's WebSocket drops (a laptop lid, a proxy timeout, a restart of
the page's connection), the kernel keeps talking: iopub output and the
replies to what that client asked.  Jupyter Server keeps those messages in a
list with no bound and replays them when the client comes back with the same
``session_id``; a client that never comes back leaks them.  kgd keeps them in
a ``SessionBuffer`` bounded three ways (message count, bytes, age): the
oldest messages are dropped first, and the buffer reports how many it
dropped so the caller can log it.  A single message larger than the byte
limit is never kept (it is logged as ``session_buffer_dropped``): making room
for it would evict the small replies and status messages the client needs to
resume, and it could not be kept anyway.  Time comes from an ``IReactorTime``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kgd.kernels.messages import RawMessage

log = Logger()

@dataclass(frozen=True)
class BufferLimits:
    """How much of a disconnected session is kept: messages, bytes, seconds (0 keeps nothing)."""

    messages: int
    bytes: int
    age: float

    @property
    def enabled(self) -> bool:
        """Whether anything would be kept at all."""
        return self.messages > 0 and self.bytes > 0 and self.age > 0


class BufferedMessage(NamedTuple):
    """One kept message, with what the bounds need to know about it."""

    channel: str
    message: RawMessage
    size: int
    received: float


def message_size(message: RawMessage) -> int:
    """Bytes a message holds: its four JSON parts and its buffers."""
    return (
        len(message.header)
        + len(message.parent_header)
        + len(message.metadata)
        + len(message.content)
        + sum(len(buffer) for buffer in message.buffers)
    )


class SessionBuffer:
    """Messages of one disconnected session, oldest first, within ``limits``."""

    def __init__(self, clock: IReactorTime, limits: BufferLimits, label: str = "") -> None:
        self._clock = clock
        self._limits = limits
        self._label = label
        self._kept: deque[BufferedMessage] = deque()
        self.bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._kept)

    def append(self, channel: str, message: RawMessage) -> int:
        """Keep a message; returns how many messages were dropped to stay within the limits.

        A message larger than the byte limit by itself is dropped at once,
        and the messages already kept stay.
        """
        now = self._clock.seconds()
        entry = BufferedMessage(channel, message, message_size(message), now)
        if entry.size > self._limits.bytes:
            self.dropped += 1
            log.warn(
                "session {session}: dropped a {msg_type} of {size} bytes, over the buffer's {limit}",
                session=self._label,
                msg_type=message.msg_type,
                size=entry.size,
                limit=self._limits.bytes,
                event="session_buffer_dropped",
            )
            return 1 + self._expire(now)
        self._kept.append(entry)
        self.bytes += entry.size
        dropped = self._expire(now)
        limits = self._limits
        while self._kept and (len(self._kept) > limits.messages or self.bytes > limits.bytes):
            self._drop_oldest()
            dropped += 1
        return dropped

    def drain(self) -> list[BufferedMessage]:
        """Take every message still within the age limit, oldest first, and empty the buffer."""
        self._expire(self._clock.seconds())
        kept = list(self._kept)
        self._kept.clear()
        self.bytes = 0
        return kept

    def _expire(self, now: float) -> int:
        dropped = 0
        oldest_allowed = now - self._limits.age
        while self._kept and self._kept[0].received < oldest_allowed:
            self._drop_oldest()
            dropped += 1
        return dropped

    def _drop_oldest(self) -> None:
        entry = self._kept.popleft()
        self.bytes -= entry.size
        self.dropped += 1
