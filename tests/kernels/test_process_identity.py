"""Tests for kgd.kernels.process_identity, process_watch and adopted: knowing a process that is not our child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kgd.kernels.adopted import AdoptedProcess
from kgd.kernels.process_identity import parse_stat, process_start_time
from kgd.kernels.process_watch import watch_exit
from kgd.kernels.records import LocalProcess
from tests.integration.daemon import poll_until


class StatTests(SynchronousTestCase):
    def test_command_names_with_spaces_and_parentheses(self) -> None:
        """Fields are counted after the command name's last ')', whatever the name holds."""
        rest = " ".join(["S"] + [str(n) for n in range(4, 22)] + ["987654", "0", "0"])
        self.assertEqual(parse_stat(f"123 (a) (b c)) {rest}".encode()), ("S", 987654))

    def test_living_gone_and_zombie_processes(self) -> None:
        """This process has a start time; a missing pid and a zombie have none."""
        self.assertIsInstance(process_start_time(os.getpid()), int)
        self.assertIsNone(process_start_time(2**22 + 12345))
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        self.addCleanup(child.wait)
        # Wait for the exit but leave the child unreaped: a zombie.
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        self.assertIsNone(process_start_time(child.pid))


class PolledWatchTests(SynchronousTestCase):
    """Without pidfds the process is polled; a changed start time is an ended process."""

    def test_fires_when_the_process_is_gone_or_replaced(self) -> None:
        clock = Clock()
        start_times = {10: 5, 11: 6}
        gone = watch_exit(clock, 10, 5, poll_interval=1, start_time_of=start_times.get, pidfd_open=None)
        replaced = watch_exit(clock, 11, 6, poll_interval=1, start_time_of=start_times.get, pidfd_open=None)
        clock.advance(1)
        self.assertNoResult(gone)
        del start_times[10]
        start_times[11] = 99
        clock.advance(1)
        self.successResultOf(gone)
        self.successResultOf(replaced)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_already_gone(self) -> None:
        """A process that ended before the watch began: fired at once."""
        self.successResultOf(watch_exit(Clock(), 10, 5, start_time_of={}.get, pidfd_open=None))


class PidfdWatchTests(TestCase):
    timeout = 30

    @defer.inlineCallbacks
    def test_real_process_end_is_seen(self) -> None:
        """A real process watched through a pidfd in the reactor: the watch fires once it is killed."""
        # It waits on its stdin, which only the test could close: it ends when it is killed.
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        self.addCleanup(child.wait)
        self.addCleanup(child.stdin.close)
        start_time = process_start_time(child.pid)
        assert start_time is not None
        ended = watch_exit(reactor, child.pid, start_time)
        self.assertFalse(ended.called)
        os.kill(child.pid, signal.SIGKILL)
        yield ended
        yield poll_until(lambda: child.poll() is not None)


class AdoptedProcessTests(SynchronousTestCase):
    def test_never_signals_a_process_that_is_not_the_kernel(self) -> None:
        """Signals go to the recorded group only while the pid still has the recorded start time."""
        sent: list[tuple[int, int]] = []
        start_times = {300: 7}
        ended: defer.Deferred[None] = defer.Deferred()
        process = AdoptedProcess(
            LocalProcess(300, 300, 7, "host"), {}, ended,
            killpg=lambda pgid, signum: sent.append((pgid, signum)), start_time_of=start_times.get,
        )
        process.signal(signal.SIGINT)
        start_times[300] = 8  # the kernel ended unseen and its pid went to another program
        process.terminate()
        process.kill()
        self.assertEqual(sent, [(300, signal.SIGINT)])
        waiting = process.whenEnded()
        ended.callback(None)
        self.assertIsNone(self.successResultOf(waiting))
        self.assertEqual(sent[-1], (300, signal.SIGKILL))  # what the kernel started in its group goes too
