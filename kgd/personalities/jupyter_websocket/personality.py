"""The jupyter-websocket personality: Jupyter Server's kernel REST API and channels.

A plugin object only; the Klein routes are imported when the resource is
built, after twistd has installed its reactor.
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.plugin import IPlugin
from zope.interface import implementer

from kgd.interfaces import IPersonality
from kgd.personalities.jupyter_websocket.jupyter_websocket_settings import JupyterWebsocketSettings

# Paths that, as in the reference, need no token: the API's own description.
_PUBLIC = {("api", "swagger.json"), ("api", "swagger.yaml")}


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

    def is_public(self, segments: Sequence[str]) -> bool:
        return tuple(segments) in _PUBLIC
