"""What twistd's ServiceMaker looks up: ``Options`` and ``makeService``.

Only the options are imported here; the service (and with it Klein, txzmq
and the reactor they bind to) is imported inside ``makeService``, after
twistd has installed the reactor it was asked for (``-r asyncio`` too).
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python.usage import UsageError

from kgd.options import Options

__all__ = ["Options", "makeService"]


def makeService(options: Options) -> IService:
    """Build the daemon's service tree from parsed options."""
    from kgd.service import makeService as make

    try:
        return make(options.config)
    except UsageError as error:
        # A setting only the service can check (the seed notebook, say):
        # one line on stderr and exit status 1, before anything listens.
        raise SystemExit(f"twistd kgd: {error}") from None
