"""Why a kernel did not start, as the HTTP error the kernels and sessions routes answer.

One mapping for ``POST /api/kernels`` and the session routes that start
kernels: the ``--max-kernels`` limit is 403, an unknown kernelspec 404, a bad
request 400, the daemon out of file descriptors or the shared kernel store
unreachable 503 (try later), a kernel that failed to come up 500.
"""

from __future__ import annotations

from kgd.kernels.kernel import KernelStartError
from kgd.kernels.kernel_request import InvalidKernelRequest
from kgd.kernels.kernels import KernelLimitReached
from kgd.kernels.records import StoreUnavailable
from kgd.kernels.specs import UnknownKernelSpec
from kgd.limits import out_of_descriptors
from kgd.web.errors import HTTPError


def kernel_start_http_error(error: Exception) -> HTTPError:
    """The HTTP error for a kernel that could not be started; anything else is re-raised."""
    if isinstance(error, KernelLimitReached):
        return HTTPError(403, "Resource Limit")
    if isinstance(error, UnknownKernelSpec):
        return HTTPError(404, str(error))
    if isinstance(error, InvalidKernelRequest):
        return HTTPError(400, str(error))
    if isinstance(error, StoreUnavailable):
        return HTTPError(503, str(error))
    if isinstance(error, KernelStartError) and out_of_descriptors(error):
        return HTTPError(503, "The gateway is out of file descriptors; try again later")
    if isinstance(error, KernelStartError):
        return HTTPError(500, str(error))
    raise error
