"""A private OpenSSH server on loopback for tests of SSH-based kernel provisioners.

``SshServer(root)`` generates a host key and a client key under ``root``,
writes an sshd config that listens on ``127.0.0.2`` (a loopback address
jupyter_client does not count as this host, so gateway-provisioners'
DistributedProvisioner really goes through SSH) on a free port, accepts
only that client key (root may log in with a key, never a password), and
gives sessions ``TMPDIR`` inside ``root`` so whatever a remote kernel writes
stays there.  ``home`` is a directory to use as ``HOME`` for the client
side: ``.ssh/id_ed25519`` and a ``known_hosts`` naming the server, which is
where paramiko looks.  ``start()`` fires once sshd listens; ``stop()``
ends it (by PID) and waits for it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
from typing import Any

from twisted.internet import defer, protocol, reactor

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.2"

INSTALL_HINT = (
    "apt-get update && apt-get install -y openssh-server; "
    "pip install gateway_provisioners (or pip install -e '.[test]')"
)


def missing() -> str | None:
    """Why the SSH provisioner tests cannot run here, or None."""
    if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
        return f"OpenSSH server not installed ({SSHD}, ssh-keygen); install with: {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "the loopback sshd test logs in as root and must run as root"
    if importlib.util.find_spec("gateway_provisioners") is None:
        return f"gateway_provisioners is not installed; install with: {INSTALL_HINT}"
    return None


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _SshdProtocol(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.listening: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.output += data
        if b"Server listening on" in self.output and not self.listening.called:
            self.listening.callback(None)

    def processEnded(self, reason: Any) -> None:
        if not self.listening.called:
            self.listening.errback(AssertionError(f"sshd exited before listening:\n{self.output.decode(errors='replace')}"))
        self.ended.callback(None)


class SshServer:
    """sshd on 127.0.0.2:<free port>, with its own host key and one authorized client key."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.home = os.path.join(root, "home")
        self.tmpdir = os.path.join(root, "remote-tmp")
        self.port = free_port(HOST)
        ssh_dir = os.path.join(self.home, ".ssh")
        os.makedirs(ssh_dir, mode=0o700)
        os.makedirs(self.tmpdir)
        host_key = os.path.join(root, "host_key")
        client_key = os.path.join(ssh_dir, "id_ed25519")
        for path in (host_key, client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
        shutil.copy(client_key + ".pub", os.path.join(root, "authorized_keys"))
        with open(host_key + ".pub") as f:
            kind, key = f.read().split()[:2]
        with open(os.path.join(ssh_dir, "known_hosts"), "w") as f:
            f.write(f"[{HOST}]:{self.port} {kind} {key}\n")
        self.config = os.path.join(root, "sshd_config")
        with open(self.config, "w") as f:
            f.write(
                f"Port {self.port}\nListenAddress {HOST}\nHostKey {host_key}\nPidFile none\n"
                f"AuthorizedKeysFile {os.path.join(root, 'authorized_keys')}\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                f"UsePAM no\nStrictModes no\nSetEnv TMPDIR={self.tmpdir}\n"
            )
        self._protocol = _SshdProtocol()

    @property
    def log(self) -> str:
        return self._protocol.output.decode(errors="replace")

    def start(self) -> defer.Deferred[None]:
        """Run ``sshd -D -e`` (foreground, log to stderr); fires once it listens."""
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
        self._transport = reactor.spawnProcess(self._protocol, SSHD, [SSHD, "-D", "-e", "-f", self.config], env={})
        return self._protocol.listening

    def stop(self) -> defer.Deferred[None]:
        """SIGTERM sshd and wait for it to exit."""
        if not self._protocol.ended.called and self._transport.pid is not None:
            os.kill(self._transport.pid, signal.SIGTERM)
        return self._protocol.ended
