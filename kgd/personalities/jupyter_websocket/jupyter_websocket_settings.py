"""The settings the jupyter-websocket personality reads.

Each field is named after the kgd setting (a row of ``kgd.options.SETTINGS``)
it holds; the daemon fills it by those names at startup.  A module of its own,
so the plugin object and the routes both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JupyterWebsocketSettings:
    """The settings jupyter-websocket reads; each field is named after its kgd setting."""

    list_kernels: bool
    prespawn_count: int | None
    ws_ping_interval: float
    max_message_size: int
    max_client_backlog: int
    session_buffer_messages: int
    session_buffer_bytes: int
    session_buffer_age: float
    on_stop: str
    max_connections: int
