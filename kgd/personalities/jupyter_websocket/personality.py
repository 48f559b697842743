"""The jupyter-websocket personality: Jupyter Server's kernel REST API and channels.

A plugin object and the settings it reads; the Klein routes are imported
when the resource is built, after twistd has installed its reactor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from kgd.interfaces import IPersonality

# Paths that, as in the reference, need no token: the API's own description.
_PUBLIC = {("api", "swagger.json"), ("api", "swagger.yaml")}


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


@implementer(IPlugin, IPersonality)
class JupyterWebsocketPersonality:
    """Kernels, kernelspecs and the channels WebSocket, as Jupyter Server serves them."""

    name = "jupyter-websocket"
    settings_type = JupyterWebsocketSettings
    seeds_kernels = False

    def resource(self, settings: JupyterWebsocketSettings, gateway: Any) -> Any:
        from kgd.personalities.jupyter_websocket.rest import KernelsAPI
        from kgd.policies import prespawn_pool

        return KernelsAPI(settings, gateway, prespawn_pool(gateway, settings.prespawn_count)).app.resource()

    def is_public(self, segments: list[str]) -> bool:
        return tuple(segments) in _PUBLIC
