"""The seed notebook (``--seed-uri``): code run on every new kernel before it is handed out.

``load_seed(uri, specs, force_name)`` reads the notebook with nbformat at
startup and checks it against the installed kernelspecs, so a missing file,
an unknown kernelspec or a language mismatch stops the daemon with a clear
reason instead of failing every kernel later.  ``seed_hook(seed, ...)`` is a
``Kernels.prepare_hooks`` entry: it runs the code cells in order over the
kernel's shell channel and fails the kernel's start (and so the request) at
the first cell whose reply is not ``ok``, naming the error.

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


def execute(kernel: Kernel, code: str, clock: IReactorTime, timeout: float) -> defer.Deferred[dict[str, Any]]:
    """Run ``code`` on ``kernel`` over a shell connection of its own; fire with the reply's content.

    Fails with ``KernelGone`` if the kernel dies for good, ``defer.TimeoutError``
    after ``timeout`` seconds (a kernel shut down meanwhile never answers).
    """
    request = messages.new_message(
        "execute_request",
        {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        session=kernel.session_id,
    )
    replied: defer.Deferred[dict[str, Any]] = defer.Deferred()

    def receive(channel: str, message: messages.RawMessage) -> None:
        if channel == "shell" and message.parent_msg_id == request.msg_id and not replied.called:
            replied.callback(messages.parse_json_part(message.content))

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
    return replied.addTimeout(timeout, clock).addBoth(finished)


def seed_hook(seed: Seed, clock: IReactorTime, timeout: float) -> Callable[[Kernel], defer.Deferred[None] | None]:
    """A prepare hook that runs the seed's cells on each new kernel of the seed's kernelspec."""

    @defer.inlineCallbacks
    def run(kernel: Kernel) -> Any:
        for index, code in enumerate(seed.cells, start=1):
            try:
                reply = yield execute(kernel, code, clock, timeout)
            except defer.TimeoutError:
                raise SeedFailed(f"Error seeding kernel memory: cell {index} ran longer than {timeout:g} seconds") from None
            except KernelGone:
                raise SeedFailed(f"Error seeding kernel memory: the kernel died during cell {index}") from None
            if reply.get("status") != "ok":
                error = f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}".rstrip(": ")
                raise SeedFailed(f"Error seeding kernel memory: cell {index} failed with {error}")

    def hook(kernel: Kernel) -> defer.Deferred[None] | None:
        if kernel.spec_name != seed.kernel_name:
            return None
        return run(kernel)

    return hook
