"""The kernel store of one host: a directory of small JSON records (``--kernel-store file:///...``).

One file per kernel, ``<kernel id>.json``, written atomically (a temporary
file in the same directory, fsync, rename, fsync of the directory) so a
crash leaves either the old record or the new one, never half of one.  The
records hold kernels' HMAC keys, so the directory is 0700 and each file
0600; a record that anyone else could have written or read (another owner,
looser mode) is set aside, never adopted: its pid would be signalled and
its key trusted.  So is a record this version of kgd cannot read.

Records are a few hundred bytes, written when a kernel starts, restarts or
changes hands: the calls do their I/O at once and return fired Deferreds.
"""

from __future__ import annotations

import os
import stat
import tempfile
from urllib.parse import urlsplit
from urllib.request import url2pathname

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from kgd.interfaces import IKernelStore
from kgd.kernels.records import BadRecord, KernelRecord, StoreUnavailable, decode_record, encode_record

log = Logger()

_SUFFIX = ".json"


class BadStoreDirectory(ValueError):
    """The store directory cannot be used; the message says why (a startup error)."""


def store_directory(url: str) -> str:
    """The directory a ``file:`` URL (or an absolute path) names."""
    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise BadStoreDirectory(f"{url!r} names another host; a file store is local")
        path = url2pathname(parts.path)
    else:
        path = url
    if not os.path.isabs(path):
        raise BadStoreDirectory(f"{url!r} is not an absolute path or file:/// URL")
    return path


@implementer(IKernelStore)
class FileKernelStore:
    """Kernel records as files in one private directory."""

    def __init__(self, path: str) -> None:
        """Use ``path`` (made 0700 if missing); ``BadStoreDirectory`` if kgd could not keep records there."""
        self.path = path
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
            info = os.stat(path)
        except OSError as error:
            raise BadStoreDirectory(f"cannot use {path}: {error.strerror}") from None
        if info.st_uid != os.geteuid():
            raise BadStoreDirectory(f"{path} belongs to another user (uid {info.st_uid})")
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise BadStoreDirectory(f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); chmod 700 it")
        # Root may write anywhere, so the mode is checked as well as a real write.
        if not info.st_mode & stat.S_IWUSR:
            raise BadStoreDirectory(f"{path} is read-only (mode {stat.S_IMODE(info.st_mode):o})")
        try:
            fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise BadStoreDirectory(f"cannot write in {path}: {error.strerror}") from None

    def log_directory(self) -> str:
        """Where detached kernels write their output (``<id>.log``), beside their records."""
        path = os.path.join(self.path, "logs")
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def runtime_directory(self) -> str:
        """Where kernels' connection files go unless ``--runtime-dir`` says otherwise: beside their records, kept across daemons."""
        path = os.path.join(self.path, "runtime")
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def _file(self, kernel_id: str) -> str:
        # Ids are UUIDs (Kernels checks them), so they are safe file names.
        return os.path.join(self.path, kernel_id + _SUFFIX)

    def load_all(self) -> defer.Deferred[list[KernelRecord]]:
        try:
            names = sorted(n for n in os.listdir(self.path) if n.endswith(_SUFFIX))
        except OSError as error:
            return defer.fail(StoreUnavailable(f"cannot list {self.path}: {error.strerror}"))
        records = [r for r in (self._read(name[: -len(_SUFFIX)]) for name in names) if r is not None]
        return defer.succeed(records)

    def get(self, kernel_id: str) -> defer.Deferred[KernelRecord | None]:
        return defer.succeed(self._read(kernel_id))

    def _read(self, kernel_id: str) -> KernelRecord | None:
        path = self._file(kernel_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as error:
            return self._rejected(kernel_id, f"cannot read {path}: {error.strerror}")
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
                return self._rejected(kernel_id, f"{path} is not private to this user (mode {stat.S_IMODE(info.st_mode):o})")
            raw = f.read()
        try:
            record = decode_record(raw)
        except BadRecord as bad:
            return self._rejected(kernel_id, str(bad))
        if record.kernel_id != kernel_id:
            return self._rejected(kernel_id, f"{path} holds the record of kernel {record.kernel_id}")
        return record

    def _rejected(self, kernel_id: str, reason: str) -> None:
        log.warn(
            "kernel record {kernel_id} set aside: {reason}", kernel_id=kernel_id, reason=reason, event="kernel_record_rejected"
        )
        return None

    def put(self, record: KernelRecord) -> defer.Deferred[None]:
        try:
            self._write(record.kernel_id, encode_record(record))
        except OSError as error:
            return defer.fail(StoreUnavailable(f"cannot write the record of {record.kernel_id}: {error.strerror}"))
        return defer.succeed(None)

    def _write(self, kernel_id: str, data: bytes) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.path, prefix=".", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self._file(kernel_id))
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise
        self._sync_directory()

    def _sync_directory(self) -> None:
        """Make the rename (or unlink) itself durable."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, kernel_id: str) -> defer.Deferred[None]:
        try:
            os.unlink(self._file(kernel_id))
        except FileNotFoundError:
            pass
        except OSError as error:
            return defer.fail(StoreUnavailable(f"cannot remove the record of {kernel_id}: {error.strerror}"))
        else:
            self._sync_directory()
        return defer.succeed(None)
