"""Read the seed notebook that defines a notebook-http API.

The notebook is read as ``kgd.kernels.seed`` reads every seed URI; its raw
bytes are kept for ``/_api/source``.  Problems are a ``SeedNotebookError``
with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kgd.kernels.kernel_request import notebook_kernel_name
from kgd.kernels.seed import SeedConfigError, read_notebook


class SeedNotebookError(Exception):
    """The seed notebook cannot be read or is not a notebook."""


@dataclass(frozen=True)
class SeedNotebook:
    """The notebook as read at startup: where it is, its bytes, its content."""

    path: str
    raw: bytes
    content: Any

    @property
    def kernel_name(self) -> str | None:
        """``metadata.kernelspec.name``, or None if the notebook names none."""
        return notebook_kernel_name(self.content)


def load_seed_notebook(uri: str) -> SeedNotebook:
    """Read and parse the notebook at ``uri``."""
    try:
        path, raw, content = read_notebook(uri)
    except SeedConfigError as error:
        raise SeedNotebookError(str(error)) from None
    return SeedNotebook(path, raw, content)
