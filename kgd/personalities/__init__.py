"""Personalities: the APIs kgd can serve, found as Twisted plugins.

Each personality provides ``kgd.interfaces.IPersonality`` from a module in a
``twisted/plugins/`` directory, so installing a package is enough to add one.
Plugin modules must stay light (no reactor, no Klein import at module level):
they are loaded while options are parsed, before twistd installs its reactor.
"""

from __future__ import annotations

from twisted.plugin import getPlugins

from kgd.interfaces import IPersonality


def available_personalities() -> dict[str, IPersonality]:
    """Every installed personality by name."""
    from twisted import plugins

    return {p.name: p for p in getPlugins(IPersonality, plugins)}
