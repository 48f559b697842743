"""The set of running kernels, as a Twisted Service.

``Kernels`` starts kernels (choosing the kernelspec and environment by the
rules in ``policy``), enforces ``--max-kernels`` counting kernels that are
still starting, finds kernels by id, forgets kernels that die for good, and
on ``stopService`` shuts every kernel down, so that stopping the daemon
never leaves a kernel process behind.
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Iterable, Mapping

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from kgd.interfaces import IKernelLauncher, IZmqSockets
from kgd.kernels.kernel import Kernel, KernelStartError
from kgd.kernels.kernel_request import InvalidKernelRequest, choose_kernel_name, kernel_cwd, kernel_env
from kgd.kernels.specs import KernelSpecs

log = Logger()


class KernelLimitReached(Exception):
    """Starting one more kernel would exceed ``--max-kernels``."""


class UnknownKernel(LookupError):
    """No running kernel has this id."""

    def __init__(self, kernel_id: str) -> None:
        super().__init__(f"Kernel does not exist: {kernel_id}")
        self.kernel_id = kernel_id


KernelHook = Callable[[Kernel], Any]

#: The role of a kernel someone asked for.  Pools that own kernels start them
#: under a role of their own ("prespawn", "notebook-http"), and the culler
#: spares every kernel whose role is not this one.
USER = "user"


class Kernels(Service):
    """Every kernel this daemon runs, by id."""

    name = "kernels"

    def __init__(
        self,
        specs: KernelSpecs,
        launcher: IKernelLauncher,
        sockets: IZmqSockets,
        clock: IReactorTime,
        *,
        force_name: str = "",
        max_kernels: int | None = None,
        env_whitelist: Iterable[str] = (),
        env_process_whitelist: Iterable[str] = (),
        daemon_env: Mapping[str, str] | None = None,
        root_dir: str | None = None,
        start_timeout: float = 60.0,
        shutdown_wait: float = 5.0,
    ) -> None:
        self.specs = specs
        self._launcher = launcher
        self._sockets = sockets
        self._clock = clock
        self.force_name = force_name
        self.max_kernels = max_kernels
        self._env_whitelist = tuple(env_whitelist)
        self._env_process_whitelist = tuple(env_process_whitelist)
        self._daemon_env = dict(os.environ if daemon_env is None else daemon_env)
        self._root_dir = root_dir or os.getcwd()
        self._start_timeout = start_timeout
        self._shutdown_wait = shutdown_wait
        self._kernels: dict[str, Kernel] = {}
        self._starting: dict[str, Kernel] = {}
        self._stopping: dict[str, defer.Deferred[None]] = {}
        self._roles: dict[str, str] = {}
        self.prepare_hooks: list[KernelHook] = []

    # -- queries -------------------------------------------------------------

    def get(self, kernel_id: str) -> Kernel:
        """The running kernel with this id; ``UnknownKernel`` if there is none."""
        kernel = self._kernels.get(kernel_id)
        if kernel is None or kernel.gone:
            raise UnknownKernel(kernel_id)
        return kernel

    def list(self) -> list[Kernel]:
        """Running kernels, oldest first."""
        return [k for k in self._kernels.values() if not k.gone]

    def role(self, kernel_or_id: Kernel | str) -> str:
        """Who owns the kernel: ``USER`` or the role a pool started it under."""
        kernel_id = _kernel_id(kernel_or_id)
        try:
            return self._roles[kernel_id]
        except KeyError:
            raise UnknownKernel(kernel_id) from None

    def set_role(self, kernel_or_id: Kernel | str, role: str) -> None:
        """Give a kernel to a new owner, e.g. a pooled kernel handed to a user; a forgotten kernel keeps none."""
        kernel_id = _kernel_id(kernel_or_id)
        if kernel_id in self._roles:
            self._roles[kernel_id] = role

    def alive_count(self) -> int:
        """Kernels that count toward the limit: running and still starting."""
        return len(self._kernels) + len(self._starting)

    # -- lifecycle -----------------------------------------------------------

    def start_kernel(
        self,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        path: Any = None,
        kernel_id: str | None = None,
        *,
        role: str = USER,
    ) -> defer.Deferred[Kernel]:
        """Start a kernel owned by ``role``; fires with it once it answers kernel_info.

        Fails with ``UnknownKernelSpec``, ``KernelLimitReached``,
        ``InvalidKernelRequest`` or ``KernelStartError``.
        """
        if kernel_id is not None:
            existing = self._kernels.get(kernel_id)
            if existing is not None and not existing.gone:
                return defer.succeed(existing)
            try:
                kernel_id = str(uuid.UUID(kernel_id))
            except ValueError:
                return defer.fail(InvalidKernelRequest(f"kernel_id {kernel_id!r} is not a UUID"))
            if kernel_id in self._starting:
                return defer.fail(InvalidKernelRequest(f"kernel {kernel_id} is already starting"))
        if self.max_kernels is not None and self.alive_count() >= self.max_kernels:
            return defer.fail(KernelLimitReached(f"Resource Limit: at most {self.max_kernels} kernels"))
        spec_name = choose_kernel_name(name, self.specs.default_name, self.force_name)
        try:
            spec = self.specs.get(spec_name)
        except LookupError as error:
            return defer.fail(error)
        kernel = Kernel(
            kernel_id or str(uuid.uuid4()),
            spec_name,
            spec,
            launcher=self._launcher,
            sockets=self._sockets,
            clock=self._clock,
            env=kernel_env(self._daemon_env, env, self._env_whitelist, self._env_process_whitelist),
            cwd=kernel_cwd(self._root_dir, path),
            start_timeout=self._start_timeout,
            shutdown_wait=self._shutdown_wait,
            on_dead=self._forget,
        )
        self._roles[kernel.kernel_id] = role
        return self._start(kernel)

    @defer.inlineCallbacks
    def _start(self, kernel: Kernel) -> Any:
        self._starting[kernel.kernel_id] = kernel
        began = self._clock.seconds()
        try:
            yield kernel.start()
            for hook in self.prepare_hooks:
                yield hook(kernel)
        except Exception as error:
            log.warn(
                "kernel {kernel_id} ({spec_name}) failed to start: {error}",
                kernel_id=kernel.kernel_id,
                spec_name=kernel.spec_name,
                error=error,
                event="kernel_start_failed",
            )
            self._roles.pop(kernel.kernel_id, None)
            yield kernel.shutdown()
            if isinstance(error, (KernelStartError, InvalidKernelRequest)):
                raise
            raise KernelStartError(str(error)) from error
        finally:
            self._starting.pop(kernel.kernel_id, None)
        if not self.running:
            self._roles.pop(kernel.kernel_id, None)
            yield kernel.shutdown()
            raise KernelStartError("the gateway is shutting down")
        self._kernels[kernel.kernel_id] = kernel
        log.info(
            "kernel {kernel_id} ({spec_name}) started in {duration_ms:.0f}ms",
            kernel_id=kernel.kernel_id,
            spec_name=kernel.spec_name,
            duration_ms=(self._clock.seconds() - began) * 1000,
            event="kernel_started",
        )
        return kernel

    def shutdown_kernel(self, kernel_id: str) -> defer.Deferred[None]:
        """Shut one kernel down and forget it; ``UnknownKernel`` if there is none."""
        try:
            kernel = self.get(kernel_id)
        except UnknownKernel as error:
            return defer.fail(error)
        return self._shutdown(kernel)

    def _shutdown(self, kernel: Kernel) -> defer.Deferred[None]:
        if kernel.kernel_id in self._stopping:
            return self._stopping[kernel.kernel_id]
        self._kernels.pop(kernel.kernel_id, None)
        done = kernel.shutdown()

        def forget(result: Any) -> Any:
            self._stopping.pop(kernel.kernel_id, None)
            self._roles.pop(kernel.kernel_id, None)
            log.info("kernel {kernel_id} shut down", kernel_id=kernel.kernel_id, event="kernel_shutdown")
            return result

        done.addBoth(forget)
        self._stopping[kernel.kernel_id] = done
        return done

    def _forget(self, kernel: Kernel) -> None:
        """A kernel died for good: release it and drop it from the set."""
        self._shutdown(kernel)

    def stopService(self) -> defer.Deferred[Any]:
        """Shut every kernel down, starting ones included, in parallel.

        Kernels already shutting down are waited for too, so the daemon
        never exits while one of them may still be running.
        """
        super().stopService()
        already = list(self._stopping.values())
        everything = list(self._kernels.values()) + list(self._starting.values())
        return defer.DeferredList([self._shutdown(k) for k in everything] + already, consumeErrors=True)


def _kernel_id(kernel_or_id: Kernel | str) -> str:
    return kernel_or_id if isinstance(kernel_or_id, str) else kernel_or_id.kernel_id
