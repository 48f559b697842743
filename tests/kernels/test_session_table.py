"""The in-memory ``ISessionTable`` of a lone daemon keeps the contract every session table keeps."""

from __future__ import annotations

import itertools
from typing import Any

from twisted.trial.unittest import TestCase

from kgd.kernels.session_table import MemorySessionTable, SessionStore
from tests.kernels.session_table_contract import SessionTableContract


class MemorySessionTableTests(SessionTableContract, TestCase):
    """``MemorySessionTable``: tables sharing one ``SessionStore``."""

    def tables(self, count: int) -> list[Any]:
        numbers = itertools.count(1)
        store = SessionStore(new_id=lambda: f"s{next(numbers)}")
        return [MemorySessionTable(store) for _ in range(count)]
