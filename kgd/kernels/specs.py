"""Kernelspecs: what kernels this machine can start, found by jupyter_client.

A thin wrapper over ``jupyter_client.kernelspec.KernelSpecManager`` so that
the rest of kgd asks one object for specs, names the default kernel in one
place and serves spec resources (logos) without ever reading outside the
spec's own directory.  Specs are read from disk on each call, as the
reference does, so a kernel installed while kgd runs shows up.

The provisioner a kernelspec names is read here too (``provisioner_name``),
with the start-up check ``warn_about_provisioners``: a kernelspec naming a
provisioner that is not installed, or one needing the asyncio reactor (all
provisioners are asyncio code) while the reactor is another, gets a clear
warning in the log; starting such a kernel fails with a clear error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_path
from twisted.logger import Logger

log = Logger()


class UnknownKernelSpec(LookupError):
    """No installed kernelspec has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No such kernel named {name}")
        self.name = name


class InvalidKernelSpec(UnknownKernelSpec):
    """A kernelspec directory whose kernel.json cannot be read: for clients it does not exist."""

    def __init__(self, name: str, reason: Exception) -> None:
        LookupError.__init__(self, f"Kernel spec {name} cannot be read: {reason}")
        self.name = name


class ProvisionerNotInstalled(UnknownKernelSpec):
    """The kernelspec exists but names a kernel provisioner that is not installed."""

    def __init__(self, name: str, provisioner: str) -> None:
        LookupError.__init__(
            self,
            f"Kernel {name} cannot be started: it needs the kernel provisioner {provisioner}, "
            "which is not installed on the gateway",
        )
        self.name = name
        self.provisioner = provisioner


class ResourceNotFound(LookupError):
    """A kernelspec resource that is missing or lies outside the spec's directory."""


@dataclass(frozen=True)
class SpecModel:
    """A kernelspec as the REST API describes it: name, spec and resource file names."""

    name: str
    spec: dict
    resource_files: tuple[str, ...]


_RESOURCE_PREFIXES = ("logo-",)
_RESOURCE_NAMES = ("kernel.js", "kernel.css")


def kernel_dirs() -> list[str]:
    """Where jupyter_client looks for kernelspecs, found without importing IPython.

    jupyter_client's default list ends with IPython's ``kernels`` directory,
    which it finds by importing IPython: with IPython 8 that import alone
    grows the daemon by about 24 MiB.  The directory is ``$IPYTHONDIR``, else
    ``~/.ipython``, as IPython itself resolves it.
    """
    ipython_dir = os.environ.get("IPYTHONDIR") or os.path.join(os.path.expanduser("~"), ".ipython")
    return [*jupyter_path("kernels"), os.path.join(os.path.normpath(ipython_dir), "kernels")]


class KernelSpecs:
    """Installed kernelspecs, with the gateway's default kernel name."""

    def __init__(self, default_name: str = "", manager: KernelSpecManager | None = None) -> None:
        self._manager = manager or KernelSpecManager(kernel_dirs=kernel_dirs())
        self.default_name = default_name or NATIVE_KERNEL_NAME

    def names(self) -> list[str]:
        """Every installed kernelspec name, sorted."""
        return sorted(self._manager.find_kernel_specs())

    def get(self, name: str) -> KernelSpec:
        """The spec called ``name``; ``UnknownKernelSpec`` if there is none."""
        try:
            return self._manager.get_kernel_spec(name)
        except NoSuchKernel:
            raise self._missing(name) from None
        except (ValueError, TypeError, OSError) as error:  # bad JSON, not an object, unreadable
            log.warn("kernel spec {name} cannot be read: {error}", name=name, error=error, event="bad_kernelspec")
            raise InvalidKernelSpec(name, error) from error

    def _missing(self, name: str) -> UnknownKernelSpec:
        """Why jupyter_client found no spec: none by that name, or its provisioner is not installed."""
        resource_dir = self._manager.find_kernel_specs().get(name)
        try:
            spec = KernelSpec.from_resource_dir(resource_dir) if resource_dir else None
        except (ValueError, OSError):
            spec = None
        provisioner = provisioner_name(spec) if spec is not None else None
        if provisioner is not None:
            return ProvisionerNotInstalled(name, provisioner)
        return UnknownKernelSpec(name)

    def model(self, name: str) -> SpecModel:
        """The REST model of one spec."""
        spec = self.get(name)
        return SpecModel(name=name, spec=spec.to_dict(), resource_files=_resource_files(spec.resource_dir))

    def models(self) -> list[SpecModel]:
        """The REST models of every spec that can be read; broken specs are skipped."""
        models = []
        for name in self.names():
            try:
                models.append(self.model(name))
            except (UnknownKernelSpec, ValueError, OSError):
                continue
        return models

    def resource_path(self, name: str, relative: str) -> str:
        """The real path of a file inside a spec's resource directory.

        Refuses NUL bytes, absolute paths, ``..`` and anything (such as a
        symlink) whose real path leaves the resource directory.
        """
        if "\0" in relative or not relative or os.path.isabs(relative) or relative.startswith(("/", "\\")):
            raise ResourceNotFound(relative)
        if any(part == ".." for part in relative.replace("\\", "/").split("/")):
            raise ResourceNotFound(relative)
        base = os.path.realpath(self.get(name).resource_dir)
        candidate = os.path.realpath(os.path.join(base, relative))
        if os.path.commonpath([base, candidate]) != base or not os.path.isfile(candidate):
            raise ResourceNotFound(relative)
        return candidate


def _resource_files(resource_dir: str) -> tuple[str, ...]:
    """The logo and kernel.js/css files a spec offers, as Jupyter Server lists them."""
    try:
        entries = sorted(os.listdir(resource_dir))
    except OSError:
        return ()
    return tuple(e for e in entries if e.startswith(_RESOURCE_PREFIXES) or e in _RESOURCE_NAMES)


LOCAL_PROVISIONER = "local-provisioner"


def is_asyncio_reactor(reactor: Any) -> bool:
    """True if ``reactor`` runs on an asyncio loop, as provisioners need."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    return isinstance(reactor, AsyncioSelectorReactor)


def provisioner_name(spec: KernelSpec) -> str | None:
    """The provisioner a kernelspec names, or None if kgd launches it itself."""
    metadata = spec.metadata if isinstance(spec.metadata, dict) else {}
    stanza = metadata.get("kernel_provisioner")
    name = stanza.get("provisioner_name") if isinstance(stanza, dict) else None
    if not isinstance(name, str) or not name or name == LOCAL_PROVISIONER:
        return None
    return name


def provisioner_warning(name: str, spec: KernelSpec, asyncio_reactor: bool) -> str | None:
    """The warning for a kernelspec naming a provisioner the running reactor cannot drive, if any."""
    provisioner = provisioner_name(spec)
    if asyncio_reactor or provisioner is None:
        return None
    return (
        f"kernelspec {name} names the kernel provisioner {provisioner}, which needs the asyncio reactor: "
        "start the gateway with 'twistd -r asyncio kgd', or starting this kernel will fail"
    )


def warn_about_provisioners(specs: KernelSpecs, reactor: Any) -> None:
    """At start-up, log each kernelspec whose provisioner is not installed or needs the asyncio reactor."""
    asyncio_reactor = is_asyncio_reactor(reactor)
    for name in specs.names():
        try:
            spec = specs.get(name)
        except ProvisionerNotInstalled as error:
            log.warn("{error}", error=error, event="provisioner_not_installed")
            continue
        except (LookupError, ValueError, OSError):
            continue
        warning = provisioner_warning(name, spec, asyncio_reactor)
        if warning is not None:
            log.warn("{warning}", warning=warning, event="provisioner_needs_asyncio")
