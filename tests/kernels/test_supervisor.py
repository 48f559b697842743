"""Tests for kgd.kernels.supervisor: one kernel process, launched or adopted, on a Clock.

The supervisor runs over the in-memory fakes of ``tests.kernels.fakes``: a
fake launcher whose fake processes answer over fake sockets, so each test
decides when a process answers, dies or ignores a signal.
"""

from __future__ import annotations

import signal
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from kgd.kernels.activity import KernelActivity
from kgd.kernels.connection import KernelConnection, KernelGone
from kgd.kernels.supervisor import KernelStartError, KernelSupervisor, RestartPolicy
from tests.kernels.fakes import FakeLauncher, FakeRunningKernel, FakeSockets

ADOPTED_INFO = {
    "transport": "tcp",
    "ip": "127.0.0.1",
    "signature_scheme": "hmac-sha256",
    "key": "adopted-key",
    "shell_port": 41000,
    "iopub_port": 41001,
    "stdin_port": 41002,
    "control_port": 41003,
    "hb_port": 41004,
}


def spec(interrupt_mode: str = "signal") -> KernelSpec:
    return KernelSpec(argv=["python"], display_name="Python 3", language="python", interrupt_mode=interrupt_mode)


class SupervisorTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sockets = FakeSockets(self.clock)
        self.launcher = FakeLauncher(self.sockets)
        self.gone: list[bool] = []

    def make(self, interrupt_mode: str = "signal", **options: Any) -> KernelSupervisor:
        self.activity = KernelActivity(self.clock)
        self.connection = KernelConnection("kid-1", self.sockets, self.activity)
        return KernelSupervisor(
            "kid-1",
            "python3",
            spec(interrupt_mode),
            launcher=self.launcher,
            connection=self.connection,
            activity=self.activity,
            clock=self.clock,
            env={},
            cwd="/tmp",
            on_gone=self.gone.append,
            **options,
        )

    def started(self, **options: Any) -> KernelSupervisor:
        supervisor = self.make(**options)
        d = supervisor.start()
        self.clock.advance(0)
        self.successResultOf(d)
        return supervisor

    def adopted_process(self, **behaviour: Any) -> FakeRunningKernel:
        return FakeRunningKernel(self.sockets, dict(ADOPTED_INFO), 7000, self.sockets.events, **behaviour)


class StartTests(SupervisorTestCase):
    def test_retries_on_fresh_ports_when_the_process_dies_starting(self) -> None:
        """A process that dies before kernel_info is launched again with new ports, and the kernel then starts."""
        self.launcher.behaviour = {"answers_kernel_info": False}
        supervisor = self.make()
        d = supervisor.start()
        self.clock.advance(0)
        self.launcher.behaviour = {}
        self.launcher.kernels[0].end(1)
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual([launch["connection_info"] for launch in self.launcher.launches], [None, None])
        self.assertEqual(self.connection.connection_info, self.launcher.kernels[1].connection_info)
        self.assertEqual(self.activity.execution_state, "idle")

    def test_gives_up_after_the_attempts(self) -> None:
        """After ``start_attempts`` deaths while starting, start fails with KernelStartError."""
        self.launcher.behaviour = {"answers_kernel_info": False}
        supervisor = self.make(start_attempts=2)
        d = supervisor.start()
        for index in range(2):
            self.clock.advance(0)
            self.launcher.kernels[index].end(1)
        self.failureResultOf(d, KernelStartError)
        self.assertEqual(len(self.launcher.launches), 2)


class AdoptTests(SupervisorTestCase):
    def test_adopt_connects_without_launching(self) -> None:
        """An adopted process is connected to from its own connection info and counts as started once it answers."""
        running = self.adopted_process()
        supervisor = self.make()
        d = supervisor.adopt(running)
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertEqual(self.launcher.launches, [])
        self.assertIs(supervisor.running, running)
        self.assertEqual(self.connection.connection_info, ADOPTED_INFO)
        self.assertEqual(self.activity.execution_state, "idle")

    def test_adopted_kernel_restarts_on_its_ports(self) -> None:
        """When an adopted process dies, the supervisor launches it again on the same ports and key."""
        running = self.adopted_process()
        supervisor = self.make()
        supervisor.adopt(running)
        self.clock.advance(0)
        running.end(1)
        self.clock.advance(1)
        self.assertEqual(self.launcher.launches[0]["connection_info"], ADOPTED_INFO)
        self.assertIs(supervisor.running, self.launcher.kernels[0])
        self.assertEqual(self.activity.execution_state, "idle")

    def test_silent_adopted_process_is_killed(self) -> None:
        """A process that never answers kernel_info is not adopted: the Deferred fails and the process is killed."""
        running = self.adopted_process(answers_kernel_info=False)
        supervisor = self.make(start_timeout=10)
        d = supervisor.adopt(running)
        self.clock.advance(10)
        self.failureResultOf(d, KernelStartError)
        self.assertEqual(running.signals, [signal.SIGKILL])


class AutorestartTests(SupervisorTestCase):
    def test_restarts_then_dies_when_the_policy_says(self) -> None:
        """Unexpected deaths are restarted up to the limit, shown as restarting; the next one is dead for good."""
        supervisor = self.started(restart_policy=RestartPolicy(limit=2, stable_seconds=100))
        for _ in range(2):
            supervisor.running.end(1)
            self.assertEqual(self.activity.execution_state, "restarting")
            self.clock.advance(1)
            self.assertEqual(self.activity.execution_state, "idle")
        self.assertEqual(len(self.launcher.launches), 3)
        supervisor.running.end(1)
        self.assertEqual(self.activity.execution_state, "dead")
        self.assertTrue(supervisor.gone)
        self.assertEqual(self.gone, [True])
        self.assertEqual(len(self.launcher.launches), 3)

    def test_back_off_resets_after_a_stable_run(self) -> None:
        """A kernel that stayed up longer than ``stable_seconds`` gets the full restart count again."""
        supervisor = self.started(restart_policy=RestartPolicy(limit=1, stable_seconds=10))
        supervisor.running.end(1)
        self.clock.advance(11)
        supervisor.running.end(1)
        self.clock.advance(1)
        self.assertFalse(supervisor.gone)
        self.assertEqual(len(self.launcher.launches), 3)


class InterruptTests(SupervisorTestCase):
    def test_signal_mode(self) -> None:
        """With interrupt_mode signal the process gets SIGINT and no message is sent."""
        supervisor = self.started()
        supervisor.interrupt()
        self.clock.advance(0)
        self.assertEqual(supervisor.running.signals, [signal.SIGINT])
        self.assertEqual(supervisor.running.messages_of("interrupt_request"), [])

    def test_message_mode(self) -> None:
        """With interrupt_mode message an interrupt_request goes on control and no signal is sent."""
        supervisor = self.started(interrupt_mode="message")
        supervisor.interrupt()
        self.clock.advance(0)
        self.assertEqual(supervisor.running.signals, [])
        self.assertEqual([channel for channel, _ in supervisor.running.messages_of("interrupt_request")], ["control"])

    def test_gone_kernel_refuses(self) -> None:
        """Interrupting a kernel that was shut down raises KernelGone."""
        supervisor = self.started()
        supervisor.shutdown()
        self.clock.advance(1)
        self.assertRaises(KernelGone, supervisor.interrupt)


class StopTests(SupervisorTestCase):
    def test_request_then_term_then_kill(self) -> None:
        """A process that ignores shutdown_request and TERM gets TERM after shutdown_wait, KILL after kill_wait."""
        self.launcher.behaviour = {"exits_on_shutdown_request": False, "ends_on": frozenset()}
        supervisor = self.started(shutdown_wait=5, kill_wait=3)
        running = supervisor.running
        d = supervisor.shutdown()
        self.clock.advance(0)
        self.assertEqual([channel for channel, _ in running.messages_of("shutdown_request")], ["control"])
        self.assertEqual(running.shutdowns_requested, [False])
        self.assertEqual(running.signals, [])
        self.clock.advance(5)
        self.assertEqual(running.signals, [signal.SIGTERM])
        self.clock.advance(3)
        self.assertEqual(running.signals, [signal.SIGTERM, signal.SIGKILL])
        self.successResultOf(d)
        self.assertEqual(self.gone, [False])
        self.assertEqual(self.activity.execution_state, "dead")
        self.assertEqual(running.cleanups, 1)

    def test_polite_stop_sends_no_signal(self) -> None:
        """A process that exits on shutdown_request is never signalled."""
        supervisor = self.started()
        running = supervisor.running
        d = supervisor.shutdown()
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(running.signals, [])
        self.assertTrue(running.ended)
