"""The seams of kgd, as zope interfaces.

Each names a collaborator that has more than one implementation, or that
tests replace with a fake: how a kernel is provisioned (a local process
today, a jupyter_client provisioner for remote kernels), how the gateway
reaches a kernel's ZeroMQ sockets, what API a personality serves, and where
kernels, leases and sessions are kept.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IRunningKernel(Interface):
    """One launched kernel, wherever it runs."""

    connection_info = Attribute("dict: transport, ip, the five ports, key, signature_scheme")
    pid = Attribute("process id of a local kernel, or None")

    def whenEnded():
        """A Deferred that fires with the exit code (None if killed by a signal) once the kernel has ended."""

    def signal(signum):
        """Send a signal to the kernel's process group (SIGINT interrupts it)."""

    def terminate():
        """Ask the kernel process to end (SIGTERM to its group)."""

    def kill():
        """End the kernel process at once (SIGKILL to its group)."""

    def shutdown_requested(restart):
        """The kernel answered shutdown_request: wind down what else it holds; a Deferred or None.

        A provisioner may have a part to play (a remote listener); a local
        process has nothing more to do.
        """

    def cleanup():
        """Release what the launch made (connection file); a Deferred or None."""


class IKernelLauncher(Interface):
    """Starts kernels; the only code that knows where kernels run."""

    def launch(kernel_id, spec_name, spec, env, cwd, connection_info=None):
        """Start a kernel from a jupyter_client KernelSpec.

        ``connection_info`` is None for a new kernel, or the info of an
        earlier launch of the same kernel to reuse its ports and key on
        restart.  Returns a Deferred firing with an IRunningKernel.
        """

    def stop():
        """Stop launching and undo launches still in flight; a Deferred or None."""


class IZmqSocket(Interface):
    """One ZeroMQ socket of a kernel, as kgd uses it."""

    def send(frames):
        """Send a multipart message (a list of bytes)."""

    def close():
        """Close the socket; nothing is delivered afterwards."""


class IZmqSockets(Interface):
    """Opens ZeroMQ sockets to a kernel's ports; the only user of txzmq."""

    def dealer(url, receive, identity=None):
        """A DEALER socket connected to ``url``; ``receive(frames)`` gets each message.

        ``identity`` (bytes) is the ZeroMQ routing identity: a kernel sends
        ``input_request`` on stdin to the identity that sent the execute_request
        on shell, so one client's shell and stdin sockets must share it.
        """

    def subscriber(url, receive):
        """A SUB socket subscribed to everything on ``url``."""

    def close():
        """Release what the sockets share (a ZeroMQ context); nothing opens afterwards."""


class IPersonality(Interface):
    """An API the gateway can expose; found as a Twisted plugin.

    kgd ships jupyter-websocket and notebook-http; a third party adds one by
    installing a package with a ``twisted/plugins/`` module that provides this.
    """

    name = Attribute("the --api name, e.g. 'jupyter-websocket'")
    settings_type = Attribute(
        "a frozen dataclass whose field names are kgd settings keys (rows of kgd.options.SETTINGS); "
        "the daemon fills one by field name at startup and passes it to resource()"
    )
    seeds_kernels = Attribute(
        "True if the personality runs the --seed-uri notebook on its own kernels, so the daemon must not seed every kernel"
    )

    def resource(settings, gateway):
        """An IResource serving this API below the base URL, given its ``settings_type`` value and a kgd.gateway.Gateway."""

    def is_public(segments):
        """True if the path (a list of str segments below the base URL) needs no token."""


class IKernelStore(Interface):
    """Where kgd records its kernels so that they outlive the daemon (``--kernel-store``).

    Records are ``kgd.kernels.records.KernelRecord`` values.  Every method
    returns a Deferred; a store that cannot be reached fails it with
    ``kgd.kernels.records.StoreUnavailable``.
    """

    def load_all():
        """Fire with a list of every good record; bad ones are logged and set aside, never raised."""

    def get(kernel_id):
        """Fire with the record of ``kernel_id``, or None if there is none."""

    def put(record):
        """Create or replace the record of ``record.kernel_id``; fires once it is durable."""

    def remove(kernel_id):
        """Forget ``kernel_id``'s record (no error if there is none)."""


class ILeaseTable(Interface):
    """Who owns which kernel among several replicas: one lease per kernel, with a time to live.

    A lease is held by one owner (a replica id) until it expires or is
    released; acquiring succeeds only if nobody holds it, so when an owner's
    lease expires exactly one contender takes the kernel over.  Every method
    returns a Deferred; an unreachable table fails it with
    ``kgd.kernels.records.StoreUnavailable``.
    """

    def acquire(kernel_id, owner, ttl):
        """Fire True if ``owner`` now holds the lease for ``ttl`` seconds, False if someone else holds it."""

    def renew(kernel_id, owner, ttl):
        """Fire True if ``owner`` still held the lease and now holds it for ``ttl`` more seconds, else False."""

    def release(kernel_id, owner):
        """Give the lease up if ``owner`` holds it; fire True if it did."""

    def owner(kernel_id):
        """Fire with the current holder's id, or None if the lease is free."""


class ISessionTable(Interface):
    """Jupyter Server's sessions (a document bound to a kernel), as every server of ``/api/sessions`` sees them.

    Rows are ``kgd.kernels.session_table.NotebookSession`` values.  One
    daemon keeps them in memory; replicas share them in their store, so every
    method returns a Deferred, and a table that cannot be reached fails it
    with ``kgd.kernels.records.StoreUnavailable``.
    """

    def add(path, name, type, kernel_id):
        """Fire with ``(session, True)`` for a new session of ``path``, or ``(its session, False)`` if it has one.

        At most one session per path, even when two servers add one at once."""

    def get(session_id):
        """Fire with the session of this id; fail with ``UnknownSession`` if there is none."""

    def find_by_path(path):
        """Fire with the session of a document path, or None."""

    def list():
        """Fire with every session, oldest first."""

    def update(session_id, changes):
        """Change some of ``path``, ``name``, ``type``, ``kernel_id`` (a dict); fire with the new row.

        ``UnknownSession`` if there is no such session; a change made meanwhile by another server is kept."""

    def remove(session_id):
        """Remove a session; fire with it, or fail with ``UnknownSession``."""

    def uses_kernel(kernel_id):
        """Fire True if some session is bound to this kernel."""

    def forget_kernels(kernel_ids):
        """Drop every session bound to one of these (gone) kernels; fire with the dropped sessions."""
