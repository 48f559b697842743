"""Tests for kgd.kernels.file_store: kernel records in a private directory."""

from __future__ import annotations

import json
import os
import stat

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kgd.interfaces import IKernelStore
from kgd.kernels.file_store import BadStoreDirectory, FileKernelStore, store_directory
from kgd.kernels.records import KernelRecord, LocalProcess

KERNEL_ID = "6f1c2a4e-3b0d-4c1e-9f7a-2d5b8e0c1a93"


def a_record(kernel_id: str = KERNEL_ID, pid: int = 4242) -> KernelRecord:
    info = {
        "transport": "tcp", "ip": "127.0.0.1", "shell_port": 1, "iopub_port": 2, "stdin_port": 3,
        "control_port": 4, "hb_port": 5, "key": "secret-key", "signature_scheme": "hmac-sha256",
    }
    return KernelRecord(
        kernel_id, "python3", info, {"PATH": "/bin"}, "/tmp", 1.0, 2.0, process=LocalProcess(pid, pid, 77, "host")
    )


class FileStoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        self.store = FileKernelStore(self.path)

    def test_provides_the_interface(self) -> None:
        """The file store is an IKernelStore, as the Redis store is."""
        self.assertTrue(verifyObject(IKernelStore, self.store))

    def test_round_trip_private_files(self) -> None:
        """A record put is loaded back as it was, in a 0600 file inside a 0700 directory, with no temporary left."""
        self.successResultOf(self.store.put(a_record()))
        self.assertEqual(self.successResultOf(self.store.load_all()), [a_record()])
        self.assertEqual(self.successResultOf(self.store.get(KERNEL_ID)), a_record())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.path, KERNEL_ID + ".json")).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(self.path)), [KERNEL_ID + ".json"])

    def test_put_replaces_and_remove_forgets(self) -> None:
        """A second put replaces the record (a restart's new pid); remove forgets it, twice without error."""
        self.successResultOf(self.store.put(a_record(pid=1)))
        self.successResultOf(self.store.put(a_record(pid=2)))
        self.assertEqual([r.process.pid for r in self.successResultOf(self.store.load_all())], [2])
        self.successResultOf(self.store.remove(KERNEL_ID))
        self.successResultOf(self.store.remove(KERNEL_ID))
        self.assertEqual(self.successResultOf(self.store.load_all()), [])
        self.assertIsNone(self.successResultOf(self.store.get(KERNEL_ID)))

    def plant(self, name: str, data: bytes, mode: int = 0o600) -> None:
        path = os.path.join(self.path, name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)

    def test_untrusted_or_unreadable_records_are_set_aside(self) -> None:
        """Corrupt, future-version, readable-by-others and misnamed records are skipped, logged, and left in place."""
        self.successResultOf(self.store.put(a_record()))
        good = json.loads(open(os.path.join(self.path, KERNEL_ID + ".json"), "rb").read())
        self.plant("00000000-0000-4000-8000-000000000001.json", b"{not json")
        self.plant("00000000-0000-4000-8000-000000000002.json", json.dumps(dict(good, version=2, kernel_id="00000000-0000-4000-8000-000000000002")).encode())
        self.plant("00000000-0000-4000-8000-000000000003.json", json.dumps(dict(good, kernel_id="00000000-0000-4000-8000-000000000003")).encode(), 0o644)
        self.plant("00000000-0000-4000-8000-000000000004.json", json.dumps(good).encode())
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.assertEqual(self.successResultOf(self.store.load_all()), [a_record()])
        rejected = sorted(e["kernel_id"][-1] + ": " + e["reason"] for e in events if e.get("event") == "kernel_record_rejected")
        self.assertEqual(len(rejected), 4)
        self.assertIn("not JSON", rejected[0])
        self.assertIn("unknown record version 2", rejected[1])
        self.assertIn("not private", rejected[2])
        self.assertIn(f"holds the record of kernel {KERNEL_ID}", rejected[3])
        self.assertEqual(len([n for n in os.listdir(self.path) if n.endswith(".json")]), 5)

    def test_unusable_directories(self) -> None:
        """A read-only directory or one open to other users is refused with the reason."""
        for mode, reason in ((0o500, "is read-only"), (0o750, "is open to other users")):
            path = os.path.abspath(self.mktemp())
            os.makedirs(path)
            os.chmod(path, mode)
            with self.assertRaises(BadStoreDirectory) as raised:
                FileKernelStore(path)
            self.assertIn(reason, str(raised.exception))

    def test_store_urls(self) -> None:
        """file:/// URLs are decoded; relative paths and other hosts are refused."""
        self.assertEqual(store_directory("file:///var/lib/kgd/my%20kernels"), "/var/lib/kgd/my kernels")
        self.assertEqual(store_directory("/var/lib/kgd"), "/var/lib/kgd")
        for bad in ("kernels", "file://elsewhere/var/lib/kgd"):
            self.assertRaises(BadStoreDirectory, store_directory, bad)
