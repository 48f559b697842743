"""What twistd's ServiceMaker looks up: ``Options`` and ``makeService``.

Only the options are imported here; the service (and with it Klein, txzmq
and the reactor they bind to) is imported inside ``makeService``, after
twistd has installed the reactor it was asked for (``-r asyncio`` too).

``--log-format json`` is applied here, at the twistd boundary: the returned
service sets a JSON-lines ``ILogObserver`` component on the application it
is added to, which twistd uses instead of its text observer.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.logger import ILogObserver
from twisted.python.usage import UsageError

from kgd.options import Options as SettingsOptions

__all__ = ["Options", "makeService"]


class Options(SettingsOptions):
    """``twistd kgd`` options; ``--api`` must name an installed personality plugin.

    The check is here, not in ``kgd.options``, so that the settings layer
    knows no plugin registry.
    """

    def postOptions(self) -> None:
        super().postOptions()
        from kgd.personalities import available_personalities

        installed = available_personalities()
        for name in self.config.api:
            if name not in installed:
                raise UsageError(f"--api: unknown personality {name!r} (installed: {', '.join(sorted(installed))})")


def makeService(options: SettingsOptions) -> IService:
    """Build the daemon's service tree from parsed options."""
    from kgd.service import makeService as make

    try:
        service = make(options.config)
    except UsageError as error:
        # A setting only the service can check (the seed notebook, say):
        # one line on stderr and exit status 1, before anything listens.
        raise SystemExit(f"twistd kgd: {error}") from None
    if options.config.log_format == "json":
        from kgd.logs import JsonLinesObserver

        return ApplicationLogging(service, JsonLinesObserver(sys.stdout))
    return service


class ApplicationLogging(MultiService):
    """Wraps the daemon so that twistd's application logs through ``observer``."""

    def __init__(self, service: IService, observer: Any) -> None:
        super().__init__()
        self.observer = observer
        service.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        set_component = getattr(parent, "setComponent", None)
        if set_component is not None:
            set_component(ILogObserver, self.observer)
        super().setServiceParent(parent)
