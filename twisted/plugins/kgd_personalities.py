"""The personalities kgd ships, as Twisted plugins providing IPersonality."""

from kgd.personalities.jupyter_websocket.personality import JupyterWebsocketPersonality
from kgd.personalities.notebook_http.personality import NotebookHttpPersonality

jupyterWebsocket = JupyterWebsocketPersonality()
notebookHttp = NotebookHttpPersonality()
