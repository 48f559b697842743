"""Tests for kgd.kernels.kernel: one kernel's lifecycle, driven by a Clock.

The kernel process and its sockets are the in-memory fakes of
``tests.kernels.fakes`` (real framing and signing, scheduled delivery), so
each test decides exactly when the kernel answers, dies or stays silent,
and advances time instead of waiting for it.
"""

from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta, timezone

from jupyter_client.kernelspec import KernelSpec
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kgd.interfaces import IKernelLauncher, IRunningKernel, IZmqSocket, IZmqSockets
from kgd.kernels import messages
from kgd.kernels.kernel import Kernel, KernelGone, KernelStartError, RestartPolicy, isoformat
from tests.kernels.fakes import FakeLauncher, FakeSockets

def spec(interrupt_mode: str = "signal") -> KernelSpec:
    return KernelSpec(
        argv=["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="Python 3",
        language="python",
        interrupt_mode=interrupt_mode,
        resource_dir="/nonexistent",
    )


def content(message: messages.RawMessage) -> dict:
    return json.loads(message.content)


class KernelTestCase(SynchronousTestCase):
    """A Kernel over fake launcher and sockets, with a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.sockets = FakeSockets(self.clock)
        self.launcher = FakeLauncher(self.sockets)
        self.dead: list[Kernel] = []

    def make(self, **kwargs) -> Kernel:
        options = dict(
            launcher=self.launcher,
            sockets=self.sockets,
            clock=self.clock,
            env={"PATH": "/bin"},
            cwd="/tmp",
            on_dead=self.dead.append,
        )
        options.update(kwargs)
        interrupt_mode = options.pop("interrupt_mode", "signal")
        return Kernel("kid-1", "python3", spec(interrupt_mode), **options)

    def started(self, **kwargs) -> Kernel:
        kernel = self.make(**kwargs)
        d = kernel.start()
        self.clock.advance(0)
        self.successResultOf(d)
        return kernel

    def listen(self, kernel: Kernel) -> list[messages.RawMessage]:
        received: list[messages.RawMessage] = []
        kernel.add_iopub_listener(received.append)
        return received


class FakesTests(SynchronousTestCase):
    def test_fakes_provide_interfaces(self) -> None:
        """The fakes implement the interfaces the real launcher and sockets do, so tests exercise the real contract."""
        clock = Clock()
        sockets = FakeSockets(clock)
        launcher = FakeLauncher(sockets)
        self.assertTrue(verifyObject(IZmqSockets, sockets))
        self.assertTrue(verifyObject(IKernelLauncher, launcher))
        running = self.successResultOf(launcher.launch("k", "python3", spec(), {}, "/tmp"))
        self.assertTrue(verifyObject(IRunningKernel, running))
        self.assertTrue(verifyObject(IZmqSocket, sockets.dealer("tcp://127.0.0.1:1", lambda frames: None)))


class StartTests(KernelTestCase):
    def test_start_succeeds_after_reply_and_iopub(self) -> None:
        """start() fires once the kernel answered kernel_info and iopub flowed; the kernel is then idle."""
        kernel = self.make()
        d = kernel.start()
        self.assertNoResult(d)
        self.assertEqual(kernel.execution_state, "starting")
        self.clock.advance(0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(kernel.execution_state, "idle")
        running = self.launcher.kernels[0]
        ((channel, request),) = running.messages_of("kernel_info_request")
        self.assertEqual(channel, "shell")
        self.assertEqual(self.launcher.launches[0]["env"], {"PATH": "/bin"})
        self.assertEqual(self.launcher.launches[0]["cwd"], "/tmp")

    def test_start_waits_for_iopub(self) -> None:
        """A kernel_info_reply alone does not finish start: the iopub stream must flow too."""
        self.launcher.behaviour = {"publishes_status": False}
        kernel = self.make()
        d = kernel.start()
        self.clock.advance(0)
        self.assertNoResult(d)
        self.launcher.kernels[0].publish("status", {"execution_state": "idle"})
        self.clock.advance(0)
        self.successResultOf(d)

    def test_start_nudges_until_answered(self) -> None:
        """kernel_info_request is repeated every nudge interval until the kernel answers."""
        self.launcher.behaviour = {"answers_kernel_info": False}
        kernel = self.make(nudge_interval=0.5)
        d = kernel.start()
        self.clock.advance(0)
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        running = self.launcher.kernels[0]
        self.assertEqual(len(running.messages_of("kernel_info_request")), 3)
        running.answers_kernel_info = True
        self.clock.advance(0.5)
        self.successResultOf(d)
        self.assertEqual(len(running.messages_of("kernel_info_request")), 4)
        self.clock.advance(10)
        self.assertEqual(len(running.messages_of("kernel_info_request")), 4, "nudging stops once started")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_start_timeout_kills_process(self) -> None:
        """A kernel that never answers fails start with KernelStartError after the timeout, and is killed and cleaned up."""
        self.launcher.behaviour = {"answers_kernel_info": False}
        kernel = self.make(start_timeout=30)
        d = kernel.start()
        self.clock.advance(0)
        self.clock.advance(29)
        self.assertNoResult(d)
        self.clock.advance(1)
        failure = self.failureResultOf(d, KernelStartError)
        self.assertIn("30 seconds", str(failure.value))
        running = self.launcher.kernels[0]
        self.assertTrue(running.ended)
        self.assertEqual(running.signals, [signal.SIGKILL])
        self.assertEqual(running.cleanups, 1)

    def test_death_while_starting(self) -> None:
        """A kernel process that keeps dying before answering fails start with KernelStartError after 3 launches, each on fresh ports and cleaned up."""
        self.launcher.behaviour = {"answers_kernel_info": False}
        kernel = self.make()
        d = kernel.start()
        for attempt in range(3):
            self.clock.advance(0)
            self.assertNoResult(d)
            self.launcher.kernels[attempt].end(1)
        failure = self.failureResultOf(d, KernelStartError)
        self.assertIn("died while starting", str(failure.value))
        self.assertEqual([k.cleanups for k in self.launcher.kernels], [1, 1, 1])
        self.assertEqual([launch["connection_info"] for launch in self.launcher.launches], [None, None, None])
        ports = {k.connection_info["shell_port"] for k in self.launcher.kernels}
        self.assertEqual(len(ports), 3, "each launch gets ports of its own")

    def test_death_while_starting_then_success(self) -> None:
        """A kernel whose first process dies before answering is started by a second launch, on new ports."""
        self.launcher.behaviour = {"answers_kernel_info": False}
        kernel = self.make()
        d = kernel.start()
        self.clock.advance(0)
        self.launcher.behaviour = {}
        self.launcher.kernels[0].end(1)
        self.clock.advance(1)
        self.successResultOf(d)
        self.assertEqual(kernel.execution_state, "idle")
        self.assertEqual(len(self.launcher.kernels), 2)
        self.assertEqual(kernel.connection_info, self.launcher.kernels[1].connection_info)

    def test_launch_failure(self) -> None:
        """A launcher error becomes KernelStartError naming the kernelspec."""
        self.launcher.failure = OSError("no such file: python")
        d = self.make().start()
        failure = self.failureResultOf(d, KernelStartError)
        self.assertIn("python3", str(failure.value))
        self.assertIn("no such file", str(failure.value))


class InterruptTests(KernelTestCase):
    def test_interrupt_by_signal(self) -> None:
        """interrupt_mode 'signal' sends SIGINT to the kernel's process group and nothing on control."""
        kernel = self.started()
        kernel.interrupt()
        self.clock.advance(0)
        running = self.launcher.kernels[0]
        self.assertEqual(running.signals, [signal.SIGINT])
        self.assertEqual(running.messages_of("interrupt_request"), [])

    def test_interrupt_by_message(self) -> None:
        """interrupt_mode 'message' sends interrupt_request on control and no signal."""
        kernel = self.started(interrupt_mode="message")
        kernel.interrupt()
        self.clock.advance(0)
        running = self.launcher.kernels[0]
        self.assertEqual(running.signals, [])
        self.assertEqual([c for c, _ in running.messages_of("interrupt_request")], ["control"])

    def test_interrupt_gone_kernel(self) -> None:
        """Interrupting a kernel that was shut down raises KernelGone."""
        kernel = self.started()
        kernel.shutdown()
        self.clock.advance(0)
        self.assertRaises(KernelGone, kernel.interrupt)


class ShutdownTests(KernelTestCase):
    def test_polite_shutdown(self) -> None:
        """A kernel that obeys shutdown_request ends without any signal; its sockets close and it is dead."""
        kernel = self.started()
        d = kernel.shutdown()
        self.assertNoResult(d)
        self.clock.advance(0)
        self.successResultOf(d)
        running = self.launcher.kernels[0]
        self.assertEqual([c for c, _ in running.messages_of("shutdown_request")], ["control"])
        self.assertEqual(content(running.messages_of("shutdown_request")[0][1]), {"restart": False})
        self.assertEqual(running.signals, [])
        self.assertEqual(running.cleanups, 1)
        self.assertEqual(kernel.execution_state, "dead")
        self.assertTrue(kernel.gone)
        self.assertTrue(all(s.closed for s in self.sockets.opened))

    def test_shutdown_escalates_to_term_then_kill(self) -> None:
        """A kernel ignoring shutdown_request gets TERM after shutdown_wait, then KILL after kill_wait."""
        self.launcher.behaviour = {"exits_on_shutdown_request": False, "ends_on": frozenset()}
        kernel = self.started(shutdown_wait=3, kill_wait=2)
        running = self.launcher.kernels[0]
        d = kernel.shutdown()
        self.clock.advance(0)
        self.clock.advance(2.9)
        self.assertEqual(running.signals, [])
        self.clock.advance(0.1)
        self.assertEqual(running.signals, [signal.SIGTERM])
        self.assertNoResult(d)
        self.clock.advance(1.9)
        self.assertEqual(running.signals, [signal.SIGTERM])
        self.clock.advance(0.1)
        self.assertEqual(running.signals, [signal.SIGTERM, signal.SIGKILL])
        self.successResultOf(d)
        self.assertEqual(running.cleanups, 1)

    def test_shutdown_stops_at_term(self) -> None:
        """A kernel that ends on TERM is not sent KILL."""
        self.launcher.behaviour = {"exits_on_shutdown_request": False}
        kernel = self.started(shutdown_wait=3)
        d = kernel.shutdown()
        self.clock.advance(3)
        self.successResultOf(d)
        self.assertEqual(self.launcher.kernels[0].signals, [signal.SIGTERM])

    def test_shutdown_while_starting(self) -> None:
        """Shutting down a kernel that is still starting fails its start and leaves no process."""
        self.launcher.behaviour = {"answers_kernel_info": False}
        kernel = self.make()
        started = kernel.start()
        self.clock.advance(0)
        stopped = kernel.shutdown()
        self.clock.advance(10)
        self.failureResultOf(started, KernelStartError)
        self.successResultOf(stopped)
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual(self.launcher.launches[1:], [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_shutdown_twice(self) -> None:
        """A second shutdown is harmless."""
        kernel = self.started()
        self.clock.advance(0)
        first = kernel.shutdown()
        self.clock.advance(0)
        self.successResultOf(first)
        self.successResultOf(kernel.shutdown())
        self.assertEqual(self.launcher.kernels[0].cleanups, 1)


class RestartTests(KernelTestCase):
    def test_restart_keeps_id_and_ports(self) -> None:
        """restart() stops the process politely and relaunches with the same id, ports and key; clients stay attached."""
        kernel = self.started()
        first = self.launcher.kernels[0]
        replies: list[str] = []
        client = kernel.client(lambda channel, message: replies.append(message.msg_type))
        d = kernel.restart()
        self.clock.advance(0)
        self.successResultOf(d)
        self.assertTrue(first.ended)
        self.assertEqual(content(first.messages_of("shutdown_request")[0][1]), {"restart": True})
        self.assertEqual(self.launcher.launches[1]["kernel_id"], "kid-1")
        self.assertEqual(self.launcher.launches[1]["connection_info"], first.connection_info)
        self.assertEqual(kernel.execution_state, "idle")
        client.send("shell", messages.new_message("kernel_info_request", {}, session="s"))
        self.clock.advance(0)
        self.assertEqual(replies, ["kernel_info_reply"])

    def test_failed_restart_declares_dead(self) -> None:
        """A restart whose new process never answers fails, and the kernel is dead: listeners see 'dead', its owner forgets it, no process is left."""
        kernel = self.started(start_timeout=5)
        received = self.listen(kernel)
        self.launcher.behaviour = {"answers_kernel_info": False}
        d = kernel.restart()
        self.clock.advance(0)
        self.clock.advance(5)
        self.failureResultOf(d, KernelStartError)
        self.assertEqual(kernel.execution_state, "dead")
        self.assertTrue(kernel.gone)
        self.assertEqual(self.dead, [kernel])
        self.assertEqual(self.launcher.alive(), [])
        self.assertEqual([content(m)["execution_state"] for m in received if m.parent_header == b"{}"], ["dead"])

    def test_autorestart_on_unexpected_death(self) -> None:
        """A kernel that dies on its own is relaunched with the same connection, and listeners see 'restarting'."""
        kernel = self.started()
        received = self.listen(kernel)
        first = self.launcher.kernels[0]
        first.end(1)
        self.assertEqual(kernel.execution_state, "restarting")
        self.assertEqual(first.cleanups, 1)
        self.assertEqual([content(m)["execution_state"] for m in received if m.msg_type == "status"][0], "restarting")
        self.assertEqual(len(self.launcher.launches), 2)
        self.assertEqual(self.launcher.launches[1]["connection_info"], first.connection_info)
        self.clock.advance(0)
        self.assertEqual(kernel.execution_state, "idle")
        self.assertFalse(kernel.gone)
        self.assertEqual(self.dead, [])

    def test_autorestarted_kernel_becomes_idle_when_ready(self) -> None:
        """After an autorestart the state leaves 'restarting' as soon as the kernel is ready, even with no status message."""
        kernel = self.started()
        self.launcher.behaviour = {"publishes_status": False}
        self.launcher.kernels[0].end(1)
        self.clock.advance(0)
        self.assertEqual(kernel.execution_state, "restarting")
        self.launcher.kernels[1].publish("stream", {"name": "stdout", "text": "up"})
        self.clock.advance(0)
        self.assertEqual(kernel.execution_state, "idle")

    def test_restart_limit_declares_dead(self) -> None:
        """Past the RestartPolicy limit of deaths in a row, listeners see 'dead', on_dead is called, the kernel is gone."""
        kernel = self.started(restart_policy=RestartPolicy(limit=2, stable_seconds=10))
        received = self.listen(kernel)
        for _ in range(2):
            self.launcher.alive()[0].end(1)
            self.clock.advance(0)
        self.assertEqual(len(self.launcher.launches), 3)
        self.launcher.alive()[0].end(1)
        states = [content(m)["execution_state"] for m in received if m.msg_type == "status" and m.parent_header == b"{}"]
        self.assertEqual(states, ["restarting", "restarting", "dead"])
        self.assertEqual(len(self.launcher.launches), 3)
        self.assertEqual(self.dead, [kernel])
        self.assertTrue(kernel.gone)
        self.assertEqual(kernel.execution_state, "dead")
        self.assertRaises(KernelGone, kernel.client, lambda c, m: None)

    def test_stable_kernel_resets_restart_count(self) -> None:
        """A kernel that stayed up longer than stable_seconds gets the full number of restarts again."""
        self.started(restart_policy=RestartPolicy(limit=1, stable_seconds=10))
        self.launcher.alive()[0].end(1)
        self.clock.advance(0)
        self.clock.advance(11)
        self.launcher.alive()[0].end(1)
        self.clock.advance(0)
        self.assertEqual(self.dead, [])
        self.assertEqual(len(self.launcher.launches), 3)

    def test_policy_counts(self) -> None:
        """RestartPolicy allows ``limit`` restarts in a row, and starts over after a stable period."""
        policy = RestartPolicy(limit=2, stable_seconds=5)
        self.assertEqual([policy.should_restart(t) for t in (0, 1, 2)], [True, True, False])
        self.assertTrue(policy.should_restart(8))


class StateTests(KernelTestCase):
    def test_execution_state_follows_iopub(self) -> None:
        """execution_state is the last iopub status; user work updates last_activity."""
        kernel = self.started()
        running = self.launcher.kernels[0]
        before = kernel.last_activity
        self.clock.advance(60)
        request = messages.new_message("execute_request", {"code": "1"}, session="s")
        running.publish("status", {"execution_state": "busy"}, parent=request)
        self.clock.advance(0)
        self.assertEqual(kernel.execution_state, "busy")
        self.assertEqual(kernel.last_activity, before + timedelta(seconds=60))
        running.publish("status", {"execution_state": "idle"}, parent=request)
        self.clock.advance(0)
        self.assertEqual(kernel.execution_state, "idle")

    def test_untracked_messages_keep_last_activity(self) -> None:
        """Status changes caused by kernel_info requests do not count as activity."""
        kernel = self.started()
        running = self.launcher.kernels[0]
        before = kernel.last_activity
        self.clock.advance(60)
        request = messages.new_message("kernel_info_request", {}, session="s")
        running.publish("status", {"execution_state": "busy"}, parent=request)
        self.clock.advance(0)
        self.assertEqual(kernel.execution_state, "busy")
        self.assertEqual(kernel.last_activity, before)

    def test_client_message_counts_as_activity(self) -> None:
        """An execute_request from a client updates last_activity; a kernel_info_request does not."""
        kernel = self.started()
        client = kernel.client(lambda c, m: None)
        before = kernel.last_activity
        self.clock.advance(60)
        client.send("shell", messages.new_message("kernel_info_request", {}, session="s"))
        self.assertEqual(kernel.last_activity, before)
        client.send("shell", messages.new_message("execute_request", {"code": "1"}, session="s"))
        self.assertEqual(kernel.last_activity, before + timedelta(seconds=60))

    def test_model(self) -> None:
        """The REST model carries id, name, ISO 8601 UTC last_activity, state and connections."""
        kernel = self.started()
        moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
        self.clock.advance((moment - datetime.fromtimestamp(self.clock.seconds(), timezone.utc)).total_seconds())
        kernel.client(lambda c, m: None).send("shell", messages.new_message("execute_request", {"code": "1"}, session="s"))
        kernel.activity.connected()
        kernel.activity.connected()
        self.assertEqual(
            kernel.model(),
            {
                "id": "kid-1",
                "name": "python3",
                "last_activity": "2024-05-06T07:08:09.123456Z",
                "execution_state": "idle",
                "connections": 2,
            },
        )
        self.assertEqual(isoformat(datetime(2024, 1, 1, tzinfo=timezone.utc)), "2024-01-01T00:00:00.000000Z")

    def test_bad_signature_dropped_and_counted(self) -> None:
        """An iopub message signed with the wrong key reaches no listener and is counted."""
        kernel = self.started()
        received = self.listen(kernel)
        running = self.launcher.kernels[0]
        running.publish("status", {"execution_state": "busy"}, signer=messages.Signer(b"wrong key"))
        self.clock.advance(0)
        self.assertEqual(received, [])
        self.assertEqual(kernel.bad_signatures, 1)
        self.assertEqual(kernel.execution_state, "idle")
        running.publish("stream", {"name": "stdout", "text": "hi"})
        self.clock.advance(0)
        self.assertEqual([m.msg_type for m in received], ["stream"])

    def test_iopub_goes_to_every_listener(self) -> None:
        """Every iopub listener receives every iopub message; a removed listener receives no more."""
        kernel = self.started()
        first, second = self.listen(kernel), []
        kernel.add_iopub_listener(second.append)
        running = self.launcher.kernels[0]
        running.publish("stream", {"name": "stdout", "text": "a"})
        self.clock.advance(0)
        kernel.remove_iopub_listener(second.append)
        running.publish("stream", {"name": "stdout", "text": "b"})
        self.clock.advance(0)
        self.assertEqual(len(first), 2)
        self.assertEqual(len(second), 1)


class ClientTests(KernelTestCase):
    def test_replies_go_to_the_asking_client_only(self) -> None:
        """Each KernelClient has its own sockets: a reply reaches the client that sent the request, no other."""
        kernel = self.started()
        got_a: list[tuple[str, str]] = []
        got_b: list[tuple[str, str]] = []
        a = kernel.client(lambda channel, m: got_a.append((channel, m.msg_type)))
        kernel.client(lambda channel, m: got_b.append((channel, m.msg_type)))
        request = messages.new_message("execute_request", {"code": "1"}, session="a")
        a.send("shell", request)
        self.clock.advance(0)
        self.assertEqual(got_a, [("shell", "execute_reply")])
        self.assertEqual(got_b, [])
        (_, seen), = self.launcher.kernels[0].messages_of("execute_request")
        self.assertEqual(seen.msg_id, request.msg_id)

    def test_client_messages_are_signed(self) -> None:
        """What a client sends is signed with the kernel's key (the kernel rejects nothing)."""
        kernel = self.started()
        kernel.client(lambda c, m: None).send("control", messages.new_message("interrupt_request", {}, session="s"))
        self.clock.advance(0)
        running = self.launcher.kernels[0]
        self.assertEqual(running.rejected, [])
        self.assertEqual(len(running.messages_of("interrupt_request")), 1)

    def test_closed_client(self) -> None:
        """A closed client receives nothing more, its sockets are closed and sending raises KernelGone."""
        kernel = self.started()
        got: list[str] = []
        client = kernel.client(lambda c, m: got.append(m.msg_type))
        client.send("shell", messages.new_message("kernel_info_request", {}, session="s"))
        client.close()
        self.clock.advance(0)
        self.assertEqual(got, [])
        self.assertRaises(KernelGone, client.send, "shell", messages.new_message("kernel_info_request", {}, session="s"))
        self.assertNotIn(client, kernel.connection.clients())

    def test_swapped_receiver(self) -> None:
        """Replacing a client's receive callable redirects later replies to it."""
        kernel = self.started()
        old: list[str] = []
        new: list[str] = []
        client = kernel.client(lambda c, m: old.append(m.msg_type))
        client.receive = lambda c, m: new.append(m.msg_type)
        client.send("shell", messages.new_message("kernel_info_request", {}, session="s"))
        self.clock.advance(0)
        self.assertEqual((old, new), ([], ["kernel_info_reply"]))

    def test_shutdown_closes_clients(self) -> None:
        """Shutting the kernel down closes every client."""
        kernel = self.started()
        client = kernel.client(lambda c, m: None)
        kernel.shutdown()
        self.clock.advance(0)
        self.assertTrue(client.closed)
