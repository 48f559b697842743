"""What every ``ISessionTable`` promises, as tests any provider's test case mixes in.

A test case supplies ``tables(count)``: that many tables over one shared
backing (two replicas' views of one Redis, or two wrappers of one in-memory
store), and runs on a reactor or with already fired Deferreds alike.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from zope.interface.verify import verifyObject

from kgd.interfaces import ISessionTable
from kgd.kernels.session_table import NotebookSession, UnknownSession


class SessionTableContract:
    """Mixed into a ``twisted.trial.unittest.TestCase`` that defines ``tables(count) -> list``."""

    def test_provides_the_interface(self) -> None:
        """The table is an ``ISessionTable``."""
        (table,) = self.tables(1)
        self.assertTrue(verifyObject(ISessionTable, table))

    @defer.inlineCallbacks
    def test_shared_add_get_list(self) -> Any:
        """A session added through one table is found by id and by path through another, and listed oldest first."""
        a, b = self.tables(2)
        first, created = yield a.add("a.ipynb", "a", "notebook", "k1")
        self.assertTrue(created)
        self.assertEqual((first.path, first.name, first.type, first.kernel_id), ("a.ipynb", "a", "notebook", "k1"))
        second, _ = yield b.add("b.py", "", "console", "k2")
        self.assertEqual((yield b.get(first.session_id)), first)
        self.assertEqual((yield a.find_by_path("b.py")), second)
        self.assertIsNone((yield a.find_by_path("c")))
        self.assertEqual((yield a.list()), [first, second])
        self.assertEqual((yield b.list()), [first, second])

    @defer.inlineCallbacks
    def test_one_session_per_path(self) -> Any:
        """Adding a path that has a session returns that session, even when two tables add it at once."""
        a, b = self.tables(2)
        added = yield defer.gatherResults([a.add("p", "", "notebook", "k1"), b.add("p", "", "notebook", "k2")])
        self.assertEqual(sorted(created for _, created in added), [False, True])
        self.assertEqual(added[0][0], added[1][0])
        self.assertEqual(len((yield a.list())), 1)

    @defer.inlineCallbacks
    def test_unknown_id(self) -> Any:
        """Getting, updating or removing an unknown id fails with UnknownSession naming it."""
        (table,) = self.tables(1)
        for call in (lambda: table.get("x"), lambda: table.update("x", {"path": "p"}), lambda: table.remove("x")):
            try:
                yield call()
            except UnknownSession as error:
                self.assertEqual(str(error), "Session not found: x")
            else:
                self.fail("no UnknownSession")

    @defer.inlineCallbacks
    def test_update(self) -> Any:
        """Path, name, type and kernel change, seen through every table; another field is a TypeError."""
        a, b = self.tables(2)
        session, _ = yield a.add("a", "a", "notebook", "k1")
        updated = yield b.update(session.session_id, {"path": "b", "kernel_id": "k2"})
        self.assertEqual(updated, NotebookSession(session.session_id, "b", "a", "notebook", "k2"))
        self.assertEqual((yield a.get(session.session_id)), updated)
        yield self.assertFailure(defer.maybeDeferred(a.update, session.session_id, {"session_id": "s9"}), TypeError)

    @defer.inlineCallbacks
    def test_concurrent_updates_both_land(self) -> Any:
        """Two tables changing different fields of one session at once: neither change is lost."""
        a, b = self.tables(2)
        session, _ = yield a.add("a", "a", "notebook", "k1")
        yield defer.gatherResults([a.update(session.session_id, {"name": "renamed"}), b.update(session.session_id, {"kernel_id": "k2"})])
        after = yield a.get(session.session_id)
        self.assertEqual((after.name, after.kernel_id), ("renamed", "k2"))

    @defer.inlineCallbacks
    def test_remove(self) -> Any:
        """A removed session is returned once and gone for every table."""
        a, b = self.tables(2)
        session, _ = yield a.add("a", "a", "notebook", "k1")
        self.assertEqual((yield b.remove(session.session_id)), session)
        yield self.assertFailure(a.get(session.session_id), UnknownSession)
        yield self.assertFailure(a.remove(session.session_id), UnknownSession)
        self.assertEqual((yield a.list()), [])

    @defer.inlineCallbacks
    def test_forget_kernels_and_kernel_use(self) -> Any:
        """Sessions bound to gone kernels are dropped and returned; kernel use is seen through every table."""
        a, b = self.tables(2)
        s1, _ = yield a.add("a", "", "notebook", "k1")
        s2, _ = yield a.add("b", "", "notebook", "k2")
        s3, _ = yield a.add("c", "", "notebook", "k1")
        self.assertTrue((yield b.uses_kernel("k1")))
        dropped = yield b.forget_kernels(["k1", "k9"])
        self.assertEqual(sorted(s.session_id for s in dropped), sorted([s1.session_id, s3.session_id]))
        self.assertEqual((yield a.list()), [s2])
        self.assertFalse((yield a.uses_kernel("k1")))
        self.assertEqual((yield a.forget_kernels([])), [])
