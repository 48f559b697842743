"""The seed notebook (``--seed-uri``): code run on every new kernel before it is handed out.

``load_seed(uri, specs, force_name)`` reads the notebook with nbformat at
startup and checks it against the installed kernelspecs, so a missing file,
an unknown kernelspec or a language mismatch stops the daemon with a clear
reason instead of failing every kernel later.  ``seed_hook(seed, ...)`` is a
``Kernels.prepare_hooks`` entry: it runs the code cells in order over the
kernel's shell channel and fails the kernel's start (and so the request) at
the first cell whose reply is not ``ok``, naming the error.  The loop itself,
``run_seed_cells``, is also how the notebook-http pool seeds its kernels.

``--seed-uri`` is a local path, used verbatim (``weirdly%20named#nb.ipynb``
is a file name), or a ``file:`` URL, decoded as URLs are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit
from urllib.request import url2pathname

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from kgd.kernels import messages
from kgd.kernels.kernel import Kernel, KernelGone, KernelStartError
from kgd.kernels.kernel_request import choose_kernel_name, notebook_kernel_name, notebook_language
from kgd.kernels.specs import KernelSpecs


class SeedConfigError(ValueError):
    """The seed notebook cannot be used (startup error)."""


class SeedFailed(KernelStartError):
    """A seed cell did not run cleanly on a new kernel."""


@dataclass(frozen=True)
class Seed:
    """What a seed notebook contributes: the kernelspec it seeds and its code cells."""

    uri: str
    kernel_name: str
    cells: tuple[str, ...]


def seed_path(uri: str) -> str:
    """The file a seed URI names: a ``file:`` URL decoded, anything else as written."""
    if uri.startswith("file:"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise SeedConfigError(f"--seed-uri {uri!r} names another host; use a local path")
        return url2pathname(parts.path)
    if "://" in uri:
        raise SeedConfigError(f"--seed-uri {uri!r} is not a local path or file: URL")
    return uri


def read_notebook(uri: str) -> tuple[str, bytes, Any]:
    """Read the notebook a seed URI names: its absolute path, raw bytes and nbformat-4 content."""
    # Imported here: nbformat and its JSON schema validation cost the daemon
    # about 20 MiB, worth paying only when a seed notebook is configured.
    import nbformat

    path = os.path.abspath(seed_path(uri))
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise SeedConfigError(f"--seed-uri: cannot read {path}: {error.strerror}") from None
    try:
        notebook = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except Exception as error:  # nbformat raises many types for a file that is not a notebook
        raise SeedConfigError(f"--seed-uri: {path} is not a notebook: {error}") from None
    return path, raw, notebook


def load_seed(uri: str, specs: KernelSpecs, force_name: str = "") -> Seed:
    """Read the seed notebook and check that its kernel exists and speaks its language."""
    path, _, notebook = read_notebook(uri)
    kernel_name = choose_kernel_name(notebook_kernel_name(notebook), specs.default_name, force_name)
    try:
        spec = specs.get(kernel_name)
    except LookupError:
        raise SeedConfigError(f"--seed-uri: {path} needs kernelspec {kernel_name!r}, which is not installed") from None
    language = notebook_language(notebook)
    if language and spec.language and language.lower() != spec.language.lower():
        raise SeedConfigError(
            f"--seed-uri: {path} is written in {language} but kernelspec {kernel_name!r} runs {spec.language}"
        )
    cells = tuple(cell.source for cell in notebook.cells if cell.cell_type == "code" and cell.source.strip())
    return Seed(uri, kernel_name, cells)


#: Runs one cell; fires with the error the kernel reported (``"Ename: evalue"``), or None if it ran cleanly.
CellRunner = Callable[[str], "defer.Deferred[str | None]"]


def describe_cell(index: int, code: str) -> str:
    """How an error names a seed cell: its number (from 1) and first line."""
    lines = code.strip().splitlines()
    return f"seed cell {index} ({lines[0][:60] if lines else ''!r})"


@defer.inlineCallbacks
def run_seed_cells(cells: tuple[str, ...], run_cell: CellRunner, clock: IReactorTime, timeout: float) -> Any:
    """Run ``cells`` in order with ``run_cell``; fail with ``SeedFailed`` at the first that errs.

    The one seeding loop, shared by the seed hook and the notebook-http pool.
    A cell running longer than ``timeout`` seconds (0: no limit) fails too, so
    a seed never hangs a kernel start.
    """
    for index, code in enumerate(cells, start=1):
        running = run_cell(code)
        if timeout > 0:
            running.addTimeout(timeout, clock)
        try:
            error = yield running
        except defer.TimeoutError:
            raise SeedFailed(
                f"Error seeding kernel memory: {describe_cell(index, code)} ran longer than {timeout:g} seconds"
            ) from None
        except KernelGone:
            raise SeedFailed(f"Error seeding kernel memory: the kernel died during {describe_cell(index, code)}") from None
        if error is not None:
            raise SeedFailed(f"Error seeding kernel memory: {describe_cell(index, code)} failed with {error}")


def execute(kernel: Kernel, code: str) -> defer.Deferred[str | None]:
    """Run ``code`` on ``kernel`` over a shell connection of its own (a ``CellRunner``).

    Fails with ``KernelGone`` if the kernel dies for good.
    """
    request = messages.new_message(
        "execute_request",
        {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        session=kernel.session_id,
    )
    replied: defer.Deferred[str | None] = defer.Deferred()

    def receive(channel: str, message: messages.RawMessage) -> None:
        if channel == "shell" and message.parent_msg_id == request.msg_id and not replied.called:
            reply = messages.parse_json_part(message.content)
            if reply.get("status") == "ok":
                replied.callback(None)
            else:
                replied.callback(f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}".rstrip(": "))

    def died(message: messages.RawMessage) -> None:
        # The kernel broadcasts "dead" when it has died for good (restarts exhausted).
        if message.msg_type == "status" and not replied.called:
            if messages.parse_json_part(message.content).get("execution_state") == "dead":
                replied.errback(KernelGone(kernel.kernel_id))

    client = kernel.client(receive)
    kernel.add_iopub_listener(died)

    def finished(result: Any) -> Any:
        client.close()
        kernel.remove_iopub_listener(died)
        return result

    client.send("shell", request)
    return replied.addBoth(finished)


def seed_hook(seed: Seed, clock: IReactorTime, timeout: float) -> Callable[[Kernel], defer.Deferred[None] | None]:
    """A prepare hook that runs the seed's cells on each new kernel of the seed's kernelspec."""

    def hook(kernel: Kernel) -> defer.Deferred[None] | None:
        if kernel.spec_name != seed.kernel_name:
            return None
        return run_seed_cells(seed.cells, lambda code: execute(kernel, code), clock, timeout)

    return hook
