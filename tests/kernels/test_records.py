"""Kernel records: what a later daemon reads back is what was written, and nothing it would misread."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.records import (
    RECORD_VERSION,
    BadRecord,
    KernelRecord,
    LocalProcess,
    ProvisionerState,
    decode_record,
    encode_record,
)

CONNECTION = {
    "transport": "tcp",
    "ip": "127.0.0.1",
    "shell_port": 50001,
    "iopub_port": 50002,
    "stdin_port": 50003,
    "control_port": 50004,
    "hb_port": 50005,
    "key": "00ff" * 16,
    "signature_scheme": "hmac-sha256",
}


def record(**changes: object) -> KernelRecord:
    base = KernelRecord(
        kernel_id="5d1a2b9e-6b7c-4d0e-9f1a-2b3c4d5e6f70",
        spec_name="python3",
        connection_info=CONNECTION,
        env={"PATH": "/usr/bin"},
        cwd="/srv",
        started=1700000000.5,
        last_activity=1700000100.25,
        process=LocalProcess(pid=4242, pgid=4242, start_time=987654, host="gw1"),
    )
    return base.with_changes(**changes)


class RoundTripTests(SynchronousTestCase):
    def test_local_kernel_round_trips(self) -> None:
        """A local kernel's record decodes to exactly what was encoded."""
        original = record()
        self.assertEqual(decode_record(encode_record(original)), original)

    def test_provisioned_kernel_round_trips(self) -> None:
        """A provisioned kernel keeps its provisioner info and has no local process."""
        state = ProvisionerState(name="distributed-provisioner", info={"kernel_id": "k", "pid": 77, "assigned_ip": "10.0.0.2"})
        original = record(process=None, provisioner=state)
        self.assertEqual(decode_record(encode_record(original)), original)

    def test_provisioner_without_its_name_is_refused(self) -> None:
        """Provisioner info of unknown origin is not loaded into whatever provisioner the kernelspec names now."""
        data = json.loads(encode_record(record(process=None)))
        data["provisioner"] = {"info": {"pid": 77}}
        with self.assertRaises(BadRecord):
            decode_record(json.dumps(data).encode())

    @given(
        env=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=16), max_size=4),
        role=st.sampled_from(["user", "prespawn", "notebook-http"]),
        restarts=st.integers(min_value=0, max_value=10**6),
    )
    def test_any_env_role_and_count_round_trip(self, env: dict[str, str], role: str, restarts: int) -> None:
        """Any environment (any Unicode), role and restart count survive the round trip."""
        original = record(env=env, role=role, restart_count=restarts)
        self.assertEqual(decode_record(encode_record(original)), original)


class RefusalTests(SynchronousTestCase):
    def mutate(self, **changes: object) -> bytes:
        data = json.loads(encode_record(record()))
        data.update(changes)
        return json.dumps(data).encode()

    def test_truncated_json_is_refused(self) -> None:
        """A record cut short by a crash mid-write is refused, not half-read."""
        raw = encode_record(record())
        with self.assertRaises(BadRecord):
            decode_record(raw[: len(raw) // 2])

    def test_future_version_is_refused(self) -> None:
        """A record written by a newer kgd is not guessed at."""
        with self.assertRaisesRegex(BadRecord, "version"):
            decode_record(self.mutate(version=RECORD_VERSION + 1))

    def test_missing_key_is_refused(self) -> None:
        """Without the HMAC key the kernel cannot be talked to: refused."""
        data = json.loads(encode_record(record()))
        del data["connection_info"]["key"]
        with self.assertRaisesRegex(BadRecord, "key"):
            decode_record(json.dumps(data).encode())

    def test_wrong_types_are_refused(self) -> None:
        """A pid that is not an integer (or a boolean posing as one) is refused."""
        for bad in ("4242", True, 42.0):
            process = {"pid": bad, "pgid": 4242, "start_time": 1, "host": "gw1"}
            with self.assertRaises(BadRecord):
                decode_record(self.mutate(process=process))

    def test_unknown_role_is_refused(self) -> None:
        """Only the three known roles are adopted."""
        with self.assertRaisesRegex(BadRecord, "role"):
            decode_record(self.mutate(role="admin"))

    def test_not_an_object_is_refused(self) -> None:
        """A JSON array, string or deeply nested value is refused with BadRecord, never another error."""
        for raw in (b"[]", b'"x"', b"[" * 100000 + b"]" * 100000):
            with self.assertRaises(BadRecord):
                decode_record(raw)
