"""Prespawned kernels and the seed notebook, over in-memory fake kernels and a Clock."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import nbformat
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels import messages
from kgd.kernels.kernel import KernelStartError
from kgd.kernels.prespawn import PRESPAWN, PrespawnPool
from kgd.kernels.seed import SeedConfigError, load_seed, seed_hook, seed_path
from kgd.kernels.kernels import USER, KernelLimitReached, Kernels
from tests.integration.daemon import RESOURCES
from tests.kernels.fakes import FakeLauncher, FakeRunningKernel, FakeSockets, temporary_specs, write_kernelspec


def write_notebook(path: str, cells: list[str], kernel: str = "python3", language: str = "python") -> str:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": kernel, "language": language, "display_name": kernel}
    notebook.cells = [nbformat.v4.new_code_cell(code) for code in cells] + [nbformat.v4.new_markdown_cell("# doc")]
    nbformat.write(notebook, path)
    return path


class KernelsCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sockets = FakeSockets(self.clock)
        self.launcher = FakeLauncher(self.sockets)
        self.specs_dir = kernels_dir = self.mktemp()
        write_kernelspec(kernels_dir, "python3")
        write_kernelspec(kernels_dir, "other")
        self.specs = temporary_specs(kernels_dir)

    def make_kernels(self, **kwargs: Any) -> Kernels:
        kernels = Kernels(self.specs, self.launcher, self.sockets, self.clock, daemon_env={}, **kwargs)
        kernels.startService()
        self.addCleanup(self._stop, kernels)
        return kernels

    def _stop(self, kernels: Kernels) -> None:
        d = kernels.stopService()
        self.clock.advance(10)
        self.successResultOf(d)

    def settle(self) -> None:
        for _ in range(20):
            self.clock.advance(0)

    def executed_code(self, fake: FakeRunningKernel) -> list[str]:
        return [messages.parse_json_part(m.content)["code"] for _, m in fake.messages_of("execute_request")]


class PrespawnPoolTests(KernelsCase):
    """``--prespawn-count``: kernels started ahead and handed out first."""

    def make_pool(self, size: int, **kwargs: Any) -> tuple[Kernels, PrespawnPool]:
        kernels = self.make_kernels(**kwargs)
        pool = PrespawnPool(kernels, size)
        pool.startService()
        self.addCleanup(pool.stopService)
        return kernels, pool

    def test_fills_at_start(self) -> None:
        """N kernels start with the service; they are listed kernels and ``filled()`` fires once they are up."""
        kernels, pool = self.make_pool(2)
        filled = pool.filled()
        self.assertNoResult(filled)
        self.settle()
        self.successResultOf(filled)
        self.assertEqual(pool.ready_count, 2)
        self.assertEqual(len(kernels.list()), 2)

    def test_take_hands_out_and_refills(self) -> None:
        """A taken kernel is a ready one at once, fresh for the culler, and a replacement starts in the background."""
        kernels, pool = self.make_pool(1)
        self.settle()
        first = kernels.list()[0]
        before = first.last_activity
        self.clock.advance(3600)
        taken = self.successResultOf(pool.take())
        self.assertEqual(taken.last_activity, before + timedelta(hours=1))  # waiting in the pool is not idleness
        self.assertIs(taken, first)
        self.assertEqual(taken.execution_state, "idle")
        self.assertFalse(pool.holds(taken))
        self.settle()
        self.assertEqual(pool.ready_count, 1)
        self.assertEqual(sorted(kernels.role(k) for k in kernels.list()), [PRESPAWN, USER])  # the culler may take it now
        self.assertEqual(len(kernels.list()), 2)
        self.assertEqual(len(self.launcher.launches), 2)

    def test_take_waits_for_a_starting_kernel(self) -> None:
        """While the pool's kernel is still starting, ``take`` fires with it once it is up."""
        kernels, pool = self.make_pool(1)
        taken = pool.take()
        self.assertNoResult(taken)
        self.settle()
        kernel = self.successResultOf(taken)
        self.assertIn(kernel, kernels.list())
        self.assertEqual(kernels.role(kernel), USER)
        self.settle()
        self.assertEqual(pool.ready_count, 1)

    def test_empty_pool_gives_none(self) -> None:
        """With nothing ready or starting (here: the limit is reached), ``take`` gives None so the caller starts one."""
        kernels, pool = self.make_pool(1, max_kernels=1)
        self.settle()
        self.successResultOf(pool.take())
        self.settle()
        self.assertIsNone(self.successResultOf(pool.take()))
        self.assertEqual(len(kernels.list()), 1)

    def test_counts_toward_max_kernels(self) -> None:
        """Prespawned kernels take slots: with max 2 and 2 prespawned, a new start is refused."""
        kernels, pool = self.make_pool(2, max_kernels=2)
        self.settle()
        self.failureResultOf(kernels.start_kernel(), KernelLimitReached)

    def test_gone_kernels_not_handed_out(self) -> None:
        """A pooled kernel shut down meanwhile (DELETE, culling) is skipped and replaced."""
        kernels, pool = self.make_pool(1)
        self.settle()
        doomed = kernels.list()[0]
        kernels.shutdown_kernel(doomed.kernel_id)
        self.settle()
        taken = pool.take()
        self.settle()
        kernel = self.successResultOf(taken)
        self.assertIsNot(kernel, doomed)
        self.assertFalse(kernel.gone)

    def test_matches(self) -> None:
        """Requests naming no kernel or the pool's kernelspec match; others do not; a forced name matches all."""
        _, pool = self.make_pool(0)
        self.assertTrue(pool.matches(None))
        self.assertTrue(pool.matches("python3"))
        self.assertFalse(pool.matches("other"))
        forced = PrespawnPool(self.make_kernels(force_name="other"), 0)
        self.assertTrue(forced.matches("python3"))
        self.assertEqual(forced.kernel_name, "other")


class SeedLoadTests(KernelsCase):
    """``--seed-uri`` is read and checked at startup."""

    def test_local_path_with_odd_characters(self) -> None:
        """A local path containing ``%20`` and ``#`` is a file name, used verbatim."""
        seed = load_seed(os.path.join(RESOURCES, "weirdly%20named#notebook.ipynb"), self.specs)
        self.assertEqual(seed.kernel_name, "python3")
        self.assertEqual(seed.cells[:2], ("import json", 'name = "Test Name"'))

    def test_file_url(self) -> None:
        """A ``file:`` URL is decoded; other schemes and hosts are refused clearly."""
        path = os.path.join(RESOURCES, "zen.ipynb")
        self.assertEqual(load_seed("file://" + path, self.specs).cells, ("import this",))
        self.assertEqual(seed_path("file:///a%20b/c%23d.ipynb"), "/a b/c#d.ipynb")
        self.assertRaises(SeedConfigError, seed_path, "https://example.com/x.ipynb")
        self.assertRaises(SeedConfigError, seed_path, "file://otherhost/x.ipynb")

    def test_only_code_cells(self) -> None:
        """Markdown and blank cells are not run."""
        path = write_notebook(self.mktemp(), ["a = 1", "  ", "b = 2"])
        self.assertEqual(load_seed(path, self.specs).cells, ("a = 1", "b = 2"))

    def test_startup_errors(self) -> None:
        """A missing file, a non-notebook, an unknown kernelspec and a language mismatch are errors with a reason."""
        with open(self.mktemp(), "w") as f:
            f.write("not json")
        cases = [
            ("/nonexistent/seed.ipynb", "", "cannot read"),
            (f.name, "", "is not a notebook"),
            (os.path.join(RESOURCES, "unknown_kernel.ipynb"), "", "needs kernelspec 'fakelang2000'"),
            (os.path.join(RESOURCES, "unknown_kernel.ipynb"), "python3", "is written in fakelang but kernelspec 'python3' runs python"),
        ]
        for uri, force, reason in cases:
            error = self.assertRaises(SeedConfigError, load_seed, uri, self.specs, force)
            self.assertIn(reason, str(error))

    def test_force_name(self) -> None:
        """``--force-kernel-name`` decides which kernels are seeded."""
        path = write_notebook(self.mktemp(), ["x = 1"])
        self.assertEqual(load_seed(path, self.specs, "other").kernel_name, "other")


class SeedRunTests(KernelsCase):
    """Seed cells run on each new kernel of the seed's kernelspec before it is handed out."""

    def make_seeded(self, cells: list[str]) -> Kernels:
        kernels = self.make_kernels()
        seed = load_seed(write_notebook(self.mktemp(), cells), self.specs)
        kernels.prepare_hooks.append(seed_hook(seed, self.clock, timeout=30))
        return kernels

    def test_cells_run_in_order(self) -> None:
        """Every code cell is executed, in order, before the start completes."""
        kernels = self.make_seeded(["a = 1", "b = a + 1"])
        d = kernels.start_kernel()
        self.settle()
        kernel = self.successResultOf(d)
        self.assertEqual(self.executed_code(self.launcher.kernels[0]), ["a = 1", "b = a + 1"])
        self.assertEqual(kernel.connections, 0)

    def test_other_kernelspec_not_seeded(self) -> None:
        """A kernel of another kernelspec starts unseeded."""
        kernels = self.make_seeded(["a = 1"])
        d = kernels.start_kernel("other")
        self.settle()
        self.successResultOf(d)
        self.assertEqual(self.executed_code(self.launcher.kernels[0]), [])

    def test_failing_cell_fails_the_start(self) -> None:
        """A cell whose reply is an error fails the start naming the error; no kernel is left and later cells do not run."""
        original = FakeRunningKernel._answer

        def answer(fake: FakeRunningKernel, socket: Any, request: Any, msg_type: str, content: dict[str, Any]) -> None:
            if msg_type == "execute_reply" and "not-a-real-module" in messages.parse_json_part(request.content)["code"]:
                content = {"status": "error", "ename": "SyntaxError", "evalue": "invalid syntax", "traceback": []}
            original(fake, socket, request, msg_type, content)

        self.patch(FakeRunningKernel, "_answer", answer)
        kernels = self.make_seeded(["import not-a-real-module", "never = 1"])
        d = kernels.start_kernel()
        self.settle()
        self.clock.advance(10)
        error = self.failureResultOf(d, KernelStartError).value
        self.assertIn("Error seeding kernel memory", str(error))
        self.assertIn("SyntaxError: invalid syntax", str(error))
        self.assertEqual(self.executed_code(self.launcher.kernels[0]), ["import not-a-real-module"])
        self.assertEqual(kernels.list(), [])
        self.assertEqual(self.launcher.alive(), [])

    def test_cell_timeout(self) -> None:
        """A cell that never answers fails the start after the timeout instead of hanging."""
        original = FakeRunningKernel._answer

        def answer(fake: FakeRunningKernel, socket: Any, request: Any, msg_type: str, content: dict[str, Any]) -> None:
            if msg_type != "execute_reply":
                original(fake, socket, request, msg_type, content)

        self.patch(FakeRunningKernel, "_answer", answer)
        kernels = self.make_seeded(["while True: pass"])
        d = kernels.start_kernel()
        self.settle()
        self.assertNoResult(d)
        self.clock.advance(31)
        self.settle()
        self.clock.advance(10)
        self.assertIn("ran longer than 30 seconds", str(self.failureResultOf(d, KernelStartError).value))
        self.assertEqual(self.launcher.alive(), [])

    def test_prespawned_kernels_are_seeded(self) -> None:
        """Kernels of the prespawn pool go through the seed too."""
        kernels = self.make_seeded(["import this"])
        pool = PrespawnPool(kernels, 1)
        pool.startService()
        self.addCleanup(pool.stopService)
        self.settle()
        self.successResultOf(pool.take())
        self.assertEqual(self.executed_code(self.launcher.kernels[0]), ["import this"])
