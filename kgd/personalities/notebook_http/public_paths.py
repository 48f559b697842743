"""Which notebook-http paths belong to the ``--static-path`` folder.

Its own module because both the personality (``is_public``, consulted by the
gateway's token check) and the routes (which serve the folder) decide it, and
must decide it with the same rule on the same decoded segments.
"""

from __future__ import annotations

from typing import Sequence

#: The first segment of the ``--static-path`` files' paths.
PUBLIC_PREFIX = "public"


def under_public(segments: Sequence[str]) -> bool:
    """True for a decoded path below ``/public/``: the static folder's, never an endpoint's."""
    return len(segments) > 1 and segments[0] == PUBLIC_PREFIX
