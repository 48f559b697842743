"""Test fixtures for provisioned kernels: entry points, kernelspecs, running code in a kernel.

``provisioner_path(root, {name: "module:Class"})`` writes a ``.dist-info``
with ``jupyter_client.kernel_provisioners`` entry points into ``root``; a
daemon with ``root`` on its ``PYTHONPATH`` sees them as installed
provisioners (jupyter_client's ``LocalProvisioner`` under a test name takes
kgd's provisioned code path with a real provisioner and a real kernel).
``stdout`` and ``reply_of`` read what a channels WebSocket received.
``processes_of(kernel_id)`` finds the processes whose command line names a
kernel id (what a remote launcher started, when "remote" is this host).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Mapping

from tests.integration.daemon import pid_alive


def provisioner_path(root: str, entry_points: Mapping[str, str]) -> str:
    """Register ``entry_points`` as kernel provisioners of a fake distribution under ``root``; returns ``root``."""
    info = os.path.join(root, "kgd_test_provisioners-0.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: kgd-test-provisioners\nVersion: 0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write("[jupyter_client.kernel_provisioners]\n")
        for name, target in entry_points.items():
            f.write(f"{name} = {target}\n")
    return root


def write_kernelspec(jupyter_path: str, name: str, provisioner: str | None, argv: list[str] | None = None) -> str:
    """An ipykernel kernelspec under ``jupyter_path/kernels/name`` naming ``provisioner`` (or none)."""
    directory = os.path.join(jupyter_path, "kernels", name)
    os.makedirs(directory, exist_ok=True)
    spec: dict[str, Any] = {
        "argv": argv or [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": name,
        "language": "python",
        "metadata": {},
    }
    if provisioner is not None:
        spec["metadata"]["kernel_provisioner"] = {"provisioner_name": provisioner, "config": {}}
    with open(os.path.join(directory, "kernel.json"), "w") as f:
        json.dump(spec, f)
    return directory


def stdout(messages: list[dict[str, Any]]) -> str:
    """The stdout text among channels WebSocket messages."""
    return "".join(
        m["content"].get("text", "")
        for m in messages
        if m["channel"] == "iopub" and m["header"]["msg_type"] == "stream" and m["content"].get("name") == "stdout"
    )


def reply_of(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of the shell reply among channels WebSocket messages."""
    return next(m["content"] for m in messages if m["channel"] == "shell" and m["header"]["msg_type"].endswith("_reply"))


def processes_of(kernel_id: str) -> list[int]:
    """PIDs of live processes whose command line contains ``kernel_id``."""
    needle = kernel_id.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return [pid for pid in found if pid_alive(pid)]
