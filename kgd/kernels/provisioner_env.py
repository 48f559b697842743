"""Which ``KERNEL_*`` values may reach a kernel provisioner: plain words only.

Clients set ``KERNEL_*`` variables in ``POST /api/kernels``; kgd hands them
to provisioners as data (the launch environment).  Some provisioners then
paste them into text another program parses: gateway-provisioners' SSH
provisioner writes ``export KERNEL_USERNAME="<value>"`` into the remote
shell command, and its Kubernetes launcher renders every ``KERNEL_*`` value
into the pod manifest (a YAML template) after loading it as YAML.  So for a
provisioned kernel, each ``KERNEL_*`` value must be a plain word that no
shell and no YAML parser reads as anything but itself: letters, digits,
spaces and ``. _ - / + = @ , :``, without the few arrangements YAML gives
meaning to (``key: value``, a leading ``- @ , :``, a lone ``-`` or ``=``).  Anything
else is refused before a provisioner sees it, with a 400 naming the
variable.  Pure; local kernels are not affected.
"""

from __future__ import annotations

from typing import Mapping

from kgd.kernels.kernel_request import InvalidKernelRequest

_PUNCTUATION = frozenset(" ._-/+=@,:")


class UnsafeProvisionerEnv(InvalidKernelRequest):
    """A ``KERNEL_*`` value a provisioner could read as shell or YAML syntax."""


def unsafe_reason(value: str) -> str | None:
    """Why ``value`` is not a plain word, or None if it is one."""
    for char in value:
        if not (char.isalnum() or char in _PUNCTUATION):
            return f"the character {char!r} is not allowed"
    if ": " in value or value.endswith(":"):
        return "a colon followed by a space or ending the value reads as a YAML mapping"
    stripped = value.strip()
    if stripped.startswith(("- ", "@", ",", ":")) or stripped in ("-", "="):
        return "a leading '- ', '@', ',' or ':', or a lone '-' or '=', reads as YAML syntax"
    return None


def check_provisioner_env(env: Mapping[str, str]) -> None:
    """Refuse (``UnsafeProvisionerEnv``) any ``KERNEL_*`` value that is not a plain word."""
    for name, value in env.items():
        if not name.startswith("KERNEL_"):
            continue
        reason = unsafe_reason(value)
        if reason is not None:
            raise UnsafeProvisionerEnv(
                f"env value of {name} is refused for a provisioned kernel: {reason} "
                "(allowed: letters, digits, spaces and . _ - / + = @ , :)"
            )
