"""Read the seed notebook that defines a notebook-http API.

``--seed-uri`` is a local path or a ``file:`` URL.  A plain path is used
verbatim (``weirdly%20named#notebook.ipynb`` is a file name, as in the
reference); a ``file:`` URL is decoded as URLs are.  The raw bytes are kept
for ``/_api/source``, and the notebook is upgraded to nbformat 4 for
parsing.  Problems are a ``SeedNotebookError`` with a one-line reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import nbformat


class SeedNotebookError(Exception):
    """The seed notebook cannot be read or is not a notebook."""


@dataclass(frozen=True)
class SeedNotebook:
    """The notebook as read at startup: where it is, its bytes, its content."""

    path: str
    raw: bytes
    content: Any

    @property
    def kernel_name(self) -> str:
        """``metadata.kernelspec.name``, or ``""`` if the notebook names none."""
        try:
            name = self.content["metadata"]["kernelspec"]["name"]
        except (KeyError, TypeError):
            return ""
        return name if isinstance(name, str) else ""


def seed_path(uri: str) -> str:
    """The file a seed URI names: a ``file:`` URL decoded, anything else as written."""
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise SeedNotebookError(f"seed URI {uri!r} names another host; use a local path")
        return url2pathname(parts.path)
    if "://" in uri:
        raise SeedNotebookError(f"seed URI {uri!r} is not a local path or file: URL")
    return uri


def load_seed_notebook(uri: str) -> SeedNotebook:
    """Read and parse the notebook at ``uri``."""
    path = os.path.abspath(seed_path(uri))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise SeedNotebookError(f"cannot read seed notebook {uri!r}: {error.strerror}") from None
    try:
        content = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as error:  # nbformat raises many types for bad files
        raise SeedNotebookError(f"seed notebook {uri!r} is not a valid notebook: {error}") from None
    return SeedNotebook(path, raw, content)
