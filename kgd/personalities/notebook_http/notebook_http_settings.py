"""The settings the notebook-http personality reads.

Each field is named after the kgd setting (a row of ``kgd.options.SETTINGS``)
it holds; the daemon fills it by those names at startup.  A module of its own,
so the plugin object and the routes both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NotebookHttpSettings:
    """The settings notebook-http reads; each field is named after its kgd setting."""

    seed_uri: str
    cell_parser: str
    force_kernel_name: str
    static_path: str
    prespawn_count: int | None
    kernel_start_timeout: float
    allow_notebook_download: bool
    auth_token: str
    request_timeout: float
