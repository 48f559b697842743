"""The floor: a kernel driven directly over ZeroMQ with jupyter_client.

A gateway can only add cost on top of talking to the kernel itself, so each
gateway number is shown next to the same operation done with no gateway in
between: an ``AsyncKernelManager`` starts a local kernel from the same
kernelspecs the gateways get (``python3`` by default) and an
``AsyncKernelClient`` talks to its ZeroMQ sockets.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from _gateways import IPYKERNEL, write_kernelspecs
from _kernel_client import TIMEOUT_S, ExecuteResult


@asynccontextmanager
async def floor_kernel(kernel_name: str = IPYKERNEL) -> AsyncIterator[AsyncKernelClient]:
    """A started kernel whose shell answered kernel_info, and its client; shut down on exit.

    Its iopub subscription may not be live yet: call ``client.wait_for_ready``
    before relying on iopub messages.
    """
    with tempfile.TemporaryDirectory(prefix="kgd-bench-floor-") as jupyter_dir:
        write_kernelspecs(Path(jupyter_dir))
        specs = KernelSpecManager(kernel_dirs=[str(Path(jupyter_dir, "kernels"))])
        manager = AsyncKernelManager(kernel_name=kernel_name, kernel_spec_manager=specs)
        await manager.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = manager.client()
        try:
            client.start_channels()
            await _kernel_info(client)
            yield client
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=False)


async def _kernel_info(client: AsyncKernelClient) -> None:
    """Send kernel_info_request and wait for its reply on shell, as a gateway client does."""
    msg_id = client.kernel_info()
    while True:
        reply = await client.get_shell_msg(timeout=TIMEOUT_S)
        if reply["parent_header"].get("msg_id") == msg_id:
            return


async def floor_execute(client: AsyncKernelClient, code: str) -> ExecuteResult:
    """Send execute_request; return once iopub reports idle for it."""
    msg_id = client.execute(code, store_history=True)
    stream_bytes = 0
    while True:
        msg = await client.get_iopub_msg(timeout=TIMEOUT_S)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            stream_bytes += len(msg["content"]["text"].encode())
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return ExecuteResult(stream_bytes, time.perf_counter())
