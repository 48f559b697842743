"""The notebook-http personality: a notebook's annotated cells served as an HTTP API.

A plugin object only; the seed notebook, the kernel pool and the Klein
routes are built when the resource is asked for, after twistd has installed
its reactor (see ``kgd.personalities.notebook_http.api``).
"""

from __future__ import annotations

from typing import Any, Sequence

from twisted.plugin import IPlugin
from zope.interface import implementer

from kgd.interfaces import IPersonality
from kgd.personalities.notebook_http.notebook_http_settings import NotebookHttpSettings
from kgd.personalities.notebook_http.public_paths import under_public

@implementer(IPlugin, IPersonality)
class NotebookHttpPersonality:
    """``# GET /path`` cells become endpoints, run on a pool of seeded kernels."""

    name = "notebook-http"
    settings_type = NotebookHttpSettings
    #: The pool's kernels run the seed notebook's cells themselves.
    seeds_kernels = True

    def resource(self, settings: NotebookHttpSettings, gateway: Any) -> Any:
        from kgd.personalities.notebook_http.api import build_api

        return build_api(settings, gateway)

    def is_public(self, segments: Sequence[str]) -> bool:
        """Files below ``/public/`` need no token, as in the reference.

        When no ``--static-path`` is set the routes check the token
        themselves for that prefix, so endpoints never become public.
        """
        return under_public(segments)
