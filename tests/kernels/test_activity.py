"""Tests for kgd.kernels.activity: state and last activity on a Clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels import messages
from kgd.kernels.activity import KernelActivity


def status(state: str, parent_type: str) -> messages.RawMessage:
    parent = messages.new_message(parent_type, {}, session="s")
    return messages.new_message("status", {"execution_state": state}, session="k", parent=parent)


class ActivityTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.activity = KernelActivity(self.clock)

    def test_starts_at_the_clocks_now(self) -> None:
        """A new kernel's last_activity is the injected clock's time, in UTC."""
        self.assertEqual(self.activity.last_activity, datetime.fromtimestamp(1_700_000_000, timezone.utc))
        self.assertEqual(self.activity.execution_state, "starting")

    def test_user_work_moves_last_activity_housekeeping_does_not(self) -> None:
        """Busy for an execute_request is activity at the clock's time; busy for kernel_info is not."""
        start = self.activity.last_activity
        self.clock.advance(30)
        self.activity.iopub(status("busy", "kernel_info_request"), handshaking=False)
        self.assertEqual(self.activity.last_activity, start)
        self.assertEqual(self.activity.execution_state, "busy")
        self.clock.advance(30)
        self.activity.iopub(status("busy", "execute_request"), handshaking=False)
        self.assertEqual(self.activity.last_activity, start + timedelta(seconds=60))

    def test_state_held_while_handshaking(self) -> None:
        """During the start handshake status messages leave the state starting; ready makes it idle."""
        self.activity.iopub(status("busy", "kernel_info_request"), handshaking=True)
        self.assertEqual(self.activity.execution_state, "starting")
        self.activity.ready()
        self.assertEqual(self.activity.execution_state, "idle")

    def test_restarting_shown_until_ready(self) -> None:
        """An autorestart stays restarting through the new launch until the kernel is ready."""
        self.activity.execution_state = "restarting"
        self.activity.starting()
        self.assertEqual(self.activity.execution_state, "restarting")
        self.activity.ready()
        self.assertEqual(self.activity.execution_state, "idle")

    def test_connections_counted(self) -> None:
        """connected() and disconnected() keep the count the REST model shows."""
        self.activity.connected()
        self.activity.connected()
        self.activity.disconnected()
        self.assertEqual(self.activity.connections, 1)

    def test_client_messages(self) -> None:
        """A client's execute_request is activity; its kernel_info_request is not."""
        start = self.activity.last_activity
        self.clock.advance(5)
        self.activity.outgoing(messages.new_message("kernel_info_request", {}, session="s"))
        self.assertEqual(self.activity.last_activity, start)
        self.activity.outgoing(messages.new_message("execute_request", {"code": "1"}, session="s"))
        self.assertEqual(self.activity.last_activity, start + timedelta(seconds=5))
