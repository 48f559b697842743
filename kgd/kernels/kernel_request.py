"""Pure rules for new kernels: which kernelspec, which environment, which directory.

A notebook's own kernelspec name and language are read here too, once, for
the seed notebook's check and for notebook-http's kernel and comment syntax.

Kept apart from the I/O so each rule is a plain function with plain tests.
The environment rules are the reference gateway's, with one fix: a kernel
never inherits the daemon's own ``KG_*``/``KGD_*`` settings (the token among
them), whether or not the request carried an ``env``.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Mapping

from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DAEMON_PREFIXES = ("KG_", "KGD_")


class InvalidKernelRequest(ValueError):
    """A kernel request whose body the gateway refuses (a 400)."""


def choose_kernel_name(requested: str | None, default: str, force: str) -> str:
    """The kernelspec to start: a forced name wins, then the request, then the default.

    A requested ``python`` means the native Python kernel (``python3``), as in
    jupyter_client's KernelManager; the kernel_gateway_demos clients ask for it.
    """
    if force:
        return force
    if requested == "python":
        return NATIVE_KERNEL_NAME
    return requested or default


def notebook_kernel_name(notebook: Any) -> str | None:
    """``metadata.kernelspec.name`` of a notebook, or None if it names none."""
    try:
        name = notebook["metadata"]["kernelspec"]["name"]
    except (KeyError, TypeError, IndexError):
        return None
    return name if isinstance(name, str) and name else None


def notebook_language(notebook: Any) -> str | None:
    """A notebook's language: ``metadata.language_info.name``, else ``metadata.kernelspec.language``.

    ``language_info`` is what the kernel that ran the notebook reported, so it
    comes first (the reference picks notebook-http's comment prefix and
    ``REQUEST`` assignment from it); a notebook never run has only its
    kernelspec's language.  None if it has neither.
    """
    for section, key in (("language_info", "name"), ("kernelspec", "language")):
        try:
            value = notebook["metadata"][section][key]
        except (KeyError, TypeError, IndexError):
            continue
        if isinstance(value, str) and value:
            return value
    return None


def validate_env(env: Any) -> dict[str, str]:
    """Check a request's ``env``: an object of valid names to string values."""
    if not isinstance(env, dict):
        raise InvalidKernelRequest("env must be a JSON object of strings")
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise InvalidKernelRequest(f"env name {name!r} is not a valid variable name")
        if not isinstance(value, str):
            raise InvalidKernelRequest(f"env value of {name} must be a string")
        if "\0" in value:
            raise InvalidKernelRequest(f"env value of {name} contains a NUL byte")
        if not value.isascii() and not _encodable(value):
            raise InvalidKernelRequest(f"env value of {name} contains an unpaired surrogate")
    return dict(env)


def _encodable(text: str) -> bool:
    """Whether a string has a UTF-8 encoding (JSON escapes can produce lone surrogates that do not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def kernel_env(
    daemon_env: Mapping[str, str],
    requested: Mapping[str, str] | None,
    whitelist: Iterable[str] = (),
    process_whitelist: Iterable[str] = (),
) -> dict[str, str]:
    """The environment a new kernel gets.

    Without a requested env (the body had no ``env`` key), the daemon's
    environment minus its own ``KG_*``/``KGD_*`` variables, for compatibility.
    With one: ``PATH``, the daemon variables named in ``process_whitelist``,
    and from the request only ``KERNEL_*`` names and names in ``whitelist``.
    ``KERNEL_GATEWAY=1`` is always set, as the reference does.
    """
    if requested is None:
        env = {k: v for k, v in daemon_env.items() if not k.startswith(_DAEMON_PREFIXES)}
    else:
        allowed = set(whitelist)
        env = {}
        if "PATH" in daemon_env:
            env["PATH"] = daemon_env["PATH"]
        for name in process_whitelist:
            if name in daemon_env and not name.startswith(_DAEMON_PREFIXES):
                env[name] = daemon_env[name]
        for name, value in requested.items():
            if (name.startswith("KERNEL_") or name in allowed) and not name.startswith(_DAEMON_PREFIXES):
                env[name] = value
    env["KERNEL_GATEWAY"] = "1"
    return env


def kernel_cwd(root_dir: str, path: Any) -> str:
    """The kernel's working directory for a request's ``path``.

    As the reference: the directory of ``path`` below ``root_dir`` if it
    exists, else the nearest existing parent, never above ``root_dir``.  A
    ``path`` naming a file means its directory.  A path with a NUL byte
    names nothing on disk, so it means ``root_dir`` too (os.path would raise).
    """
    root = os.path.realpath(root_dir)
    if not isinstance(path, str) or not path or "\0" in path:
        return root
    candidate = os.path.realpath(os.path.join(root, path.lstrip("/")))
    while True:
        if os.path.commonpath([root, candidate]) != root:
            return root
        if os.path.isdir(candidate):
            return candidate
        parent = os.path.dirname(candidate)
        if parent == candidate:
            return root
        candidate = parent
