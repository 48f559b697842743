"""The personalities kgd ships, as Twisted plugins providing IPersonality."""

from kgd.personalities.jupyter_websocket.personality import JupyterWebsocketPersonality

jupyterWebsocket = JupyterWebsocketPersonality()
