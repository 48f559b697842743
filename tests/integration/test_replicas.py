"""kgd replicas behind a real HAProxy over a real Redis: every replica serves every kernel and session, failover loses nothing.

Real processes throughout (``tests.integration.replicas.Cluster``): redis-server,
kgd daemons with ``--kernel-store redis://``, real ipykernels, HAProxy round
robin with no affinity, so consecutive requests for one kernel reach
different replicas.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest

from tests.clients.gateway_client import run_restart_scenario
from tests.integration.daemon import pid_alive, poll_until
from tests.integration.replicas import Cluster, missing
from tests.integration.jlab_scenario import run_restart_scenario as run_jlab_scenario, skip_without_jlab
from tests.integration.test_kernel_store import stream_text
from tests.integration.ws import ChannelsConnection, connect

TTL = 3.0
PASSWORD = "s3cret-redis-pw"


def answers(ws: ChannelsConnection) -> defer.Deferred[bool]:
    """True once an execute through ``ws`` is answered, reply and idle status, within 2 s."""
    return ws.execute("pass", timeout=2).addCallbacks(lambda _: True, lambda failure: failure.trap(defer.TimeoutError) and False)


class ReplicasTestCase(unittest.TestCase):
    timeout = 240

    def setUp(self) -> None:
        reason = missing()
        if reason:
            raise unittest.SkipTest(reason)

    @defer.inlineCallbacks
    def cluster(self, replicas: int = 2, **options: Any) -> Any:
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        cluster = Cluster(root, replicas=replicas, lease_ttl=TTL, **options)
        self.addCleanup(cluster.stop)
        yield cluster.start()
        return cluster

    @defer.inlineCallbacks
    def new_kernel(self, cluster: Cluster) -> Any:
        """A kernel started through the balancer: its id and its process id."""
        status, _, body = yield cluster.lb.request("POST", "/api/kernels", {})
        self.assertEqual(status, 201, body)
        pids = yield poll_until(cluster.kernel_pids, timeout=30)
        return body["id"], pids[-1]

    @defer.inlineCallbacks
    def connected_to_owner(self, cluster: Cluster, kernel_id: str, session_id: str) -> Any:
        """A channels WebSocket opened through the balancer that landed on the kernel's owner."""
        owner = yield cluster.owner(kernel_id)
        for _ in range(3 * len(cluster.daemons)):
            ws = yield connect(cluster.lb_ws_url, kernel_id, session_id=session_id)
            _, _, model = yield cluster.clients[owner].request("GET", f"/api/kernels/{kernel_id}")
            if model["connections"] == 1:
                return ws, owner
            yield ws.close()
        self.fail("round robin never sent the WebSocket to the owner")

    @defer.inlineCallbacks
    def reconnect(self, cluster: Cluster, kernel_id: str, session_id: str) -> Any:
        """Reconnect through the balancer with the same session, as a client does after a close."""
        connections: list[ChannelsConnection] = []

        @defer.inlineCallbacks
        def attempt() -> Any:
            try:
                connections.append((yield connect(cluster.lb_ws_url, kernel_id, session_id=session_id, timeout=5)))
            except Exception:
                return False  # HAProxy has not yet seen the dead replica go
            return True

        yield poll_until(attempt, timeout=30, interval=0.1)
        return connections[0]


class ServingTests(ReplicasTestCase):
    @defer.inlineCallbacks
    def test_every_replica_serves_every_kernel(self) -> None:
        """REST and WebSocket on each replica directly; state shared; interrupt and restart from a non-owner;
        DELETE through the balancer ends the process and every replica forgets the kernel."""
        cluster = yield self.cluster(replicas=3)
        kernel_id, pid = yield self.new_kernel(cluster)
        owner = yield cluster.owner(kernel_id)
        self.assertIsNotNone(owner)
        others = [i for i in range(3) if i != owner]
        for client in cluster.clients:
            status, _, model = yield client.request("GET", f"/api/kernels/{kernel_id}")
            self.assertEqual((status, model["id"]), (200, kernel_id), client.daemon.url)
            status, _, listed = yield client.request("GET", "/api/kernels")
            self.assertEqual([k["id"] for k in listed], [kernel_id], client.daemon.url)
        sockets = yield defer.gatherResults([connect(daemon.ws_url, kernel_id) for daemon in cluster.daemons])
        yield sockets[0].execute("x = 41")
        printed = []
        for ws in sockets:
            printed.append(stream_text((yield ws.execute("x += 1; print(x)"))))
        self.assertEqual(printed, ["42\n", "43\n", "44\n"], "one kernel, one namespace, whichever replica relays")

        # Interrupt through a replica that does not own the kernel: the owner signals it.
        running = sockets[others[0]].execute("import threading; threading.Event().wait()", timeout=60)
        yield sockets[others[0]].wait_for(lambda m: m["header"]["msg_type"] == "execute_input")
        status, _, body = yield cluster.clients[others[1]].request("POST", f"/api/kernels/{kernel_id}/interrupt")
        self.assertEqual(status, 204, body)
        replies = yield running
        self.assertIn("KeyboardInterrupt", [m["content"].get("ename") for m in replies])

        status, _, body = yield cluster.clients[others[0]].request("POST", f"/api/kernels/{kernel_id}/restart")
        self.assertEqual(status, 200, body)
        # The owner and the replica that answered the restart reach the new process when they answer; a third
        # replica hears of it through Redis a moment later, so its client waits for the kernel as clients do.
        yield poll_until(lambda: answers(sockets[others[1]]), timeout=30, interval=0.5)
        for ws in sockets:  # every replica's clients stay attached across the restart
            self.assertEqual(stream_text((yield ws.execute("print('x' in dir())"))), "False\n")

        status, _, body = yield cluster.lb.request("DELETE", f"/api/kernels/{kernel_id}")
        self.assertEqual(status, 204, body)
        closes = yield defer.gatherResults([ws.closed for ws in sockets])
        self.assertEqual([code for code, _ in closes], [1000, 1000, 1000])
        yield poll_until(lambda: not pid_alive(pid), timeout=15)
        for client in cluster.clients:
            status, _, _ = yield client.request("GET", f"/api/kernels/{kernel_id}")
            self.assertEqual(status, 404, client.daemon.url)

    @defer.inlineCallbacks
    def test_max_kernels_holds_across_replicas(self) -> None:
        root = os.path.abspath(self.mktemp())
        os.makedirs(root)
        cluster = Cluster(root, replicas=2, lease_ttl=TTL, args=["--max-kernels", "1"])
        self.addCleanup(cluster.stop)
        yield cluster.start()
        yield self.new_kernel(cluster)
        for client in cluster.clients:
            status, _, body = yield client.request("POST", "/api/kernels", {})
            self.assertEqual(status, 403, body)
        self.assertEqual(len(cluster.kernel_pids()), 1)


class SessionTests(ReplicasTestCase):
    @defer.inlineCallbacks
    def test_every_replica_serves_every_session(self) -> None:
        """A session made through the balancer is got, renamed, re-posted and listed through each replica directly
        (one session per path, one kernel); DELETE through the balancer ends its kernel's process everywhere."""
        cluster = yield self.cluster(replicas=3)
        status, _, model = yield cluster.lb.request("POST", "/api/sessions", {"path": "work/a.ipynb", "type": "notebook", "name": "a"})
        self.assertEqual(status, 201, model)
        session_id, kernel_id = model["id"], model["kernel"]["id"]
        (pid,) = yield poll_until(cluster.kernel_pids, timeout=30)
        for index, client in enumerate(cluster.clients):
            status, _, fetched = yield client.request("GET", f"/api/sessions/{session_id}")
            self.assertEqual((status, fetched["kernel"]["id"]), (200, kernel_id), client.daemon.url)
            status, _, patched = yield client.request("PATCH", f"/api/sessions/{session_id}", {"name": f"by-{index}"})
            self.assertEqual((status, patched["name"], patched["kernel"]["id"]), (200, f"by-{index}", kernel_id))
            status, _, again = yield client.request("POST", "/api/sessions", {"path": "work/a.ipynb", "type": "notebook"})
            self.assertEqual((status, again["id"]), (201, session_id), client.daemon.url)
        for client in cluster.clients:
            status, _, listed = yield client.request("GET", "/api/sessions")
            self.assertEqual([(s["id"], s["name"]) for s in listed], [(session_id, "by-2")], client.daemon.url)
        self.assertEqual(cluster.kernel_pids(), [pid], "one kernel for the path")

        status, _, body = yield cluster.lb.request("DELETE", f"/api/sessions/{session_id}")
        self.assertEqual(status, 204, body)
        yield poll_until(lambda: not pid_alive(pid), timeout=15)
        for client in cluster.clients:
            status, _, _ = yield client.request("GET", f"/api/sessions/{session_id}")
            self.assertEqual(status, 404, client.daemon.url)
            status, _, _ = yield client.request("GET", f"/api/kernels/{kernel_id}")
            self.assertEqual(status, 404, client.daemon.url)


class FailoverTests(ReplicasTestCase):
    @defer.inlineCallbacks
    def test_owner_killed_client_reconnects_through_the_balancer_with_its_variables(self) -> None:
        """kill -9 of the owner while a client is connected to it through HAProxy: the client reconnects with its
        session id and executes with its variables; exactly one replica takes the kernel over, the same process."""
        cluster = yield self.cluster(replicas=3)
        kernel_id, pid = yield self.new_kernel(cluster)
        ws, owner = yield self.connected_to_owner(cluster, kernel_id, "failover-session")
        self.assertEqual(stream_text((yield ws.execute("x = 42; print(x)"))), "42\n")

        yield cluster.kill(owner)
        code, _ = yield ws.closed
        self.assertNotEqual(code, 1000)
        ws = yield self.reconnect(cluster, kernel_id, "failover-session")
        self.assertEqual(stream_text((yield ws.execute("print(x)"))), "42\n")

        new_owner = yield poll_until(
            lambda: cluster.owner(kernel_id).addCallback(lambda index: index not in (None, owner) and index),
            timeout=TTL + TTL / 3 + 10,
        )
        def adopters() -> list[int]:
            return [i for i in cluster.live() if b"adopted, pid %d" % pid in cluster.daemons[i].log]

        # The lease is taken first, then the process adopted (its kernel_info answered), then logged.
        yield poll_until(adopters, timeout=30)
        self.assertEqual(adopters(), [new_owner], "exactly one replica took the kernel over")
        self.assertTrue(pid_alive(pid))
        self.assertEqual(cluster.kernel_pids(), [pid], "no second process was started")
        self.assertEqual(stream_text((yield ws.execute("print(x + 1)"))), "43\n")

        # The new owner supervises: an interrupt through the balancer reaches the process.
        running = ws.execute("import threading; threading.Event().wait()", timeout=60)
        yield ws.wait_for(lambda m: m["header"]["msg_type"] == "execute_input")
        status, _, body = yield cluster.lb.request("POST", f"/api/kernels/{kernel_id}/interrupt")
        self.assertEqual(status, 204, body)
        self.assertIn("KeyboardInterrupt", [m["content"].get("ename") for m in (yield running)])
        status, _, body = yield cluster.clients[new_owner].request("DELETE", f"/api/kernels/{kernel_id}")
        self.assertEqual(status, 204, body)
        yield poll_until(lambda: not pid_alive(pid), timeout=15)

    @defer.inlineCallbacks
    def test_jupyter_server_keeps_its_kernel_when_a_replica_dies(self) -> None:
        """``jupyter server --gateway-url=<balancer>``: the replica that owns its kernel is SIGKILLed mid-session;
        jupyter_server reconnects through HAProxy and reads the variable on the same client WebSocket."""
        cluster = yield self.cluster(replicas=2)
        killed: list[int] = []

        def kill_owner() -> None:
            def kill() -> Any:
                listed = cluster.clients[cluster.live()[0]].request("GET", "/api/kernels")
                listed.addCallback(lambda response: cluster.owner(response[2][0]["id"]))
                return listed.addCallback(lambda owner: (killed.append(owner), cluster.kill(owner))[1])

            threads.blockingCallFromThread(reactor, kill)

        out = yield threads.deferToThread(run_restart_scenario, cluster.lb_url, "", kill_owner)
        self.assertEqual(len(killed), 1)
        self.assertEqual(out["after_restart"], {"status": "ok", "stream": "42\n"})
        self.assertTrue(out["listed"])
        self.assertTrue(out["gateway_kernel_gone"])

    @defer.inlineCallbacks
    def test_jupyterlab_services_keeps_its_kernel_when_a_replica_dies(self) -> None:
        """@jupyterlab/services through HAProxy: the owner is SIGKILLed; the library reconnects and the variable is there."""
        skip_without_jlab()
        cluster = yield self.cluster(replicas=2)
        yield run_jlab_scenario(self, cluster.lb_url, lambda ready: cluster.owner(ready["kernel_id"]).addCallback(cluster.kill))


class StoreOutageTests(ReplicasTestCase):
    @defer.inlineCallbacks
    def test_redis_stopped_and_started_again(self) -> None:
        """Redis down: 503s with the reason, /readyz 503, open WebSockets keep relaying; Redis back: recovery, no kernel lost.

        Redis has a password: it reaches no log line, error body or metric."""
        cluster = yield self.cluster(replicas=2, password=PASSWORD)
        kernel_id, pid = yield self.new_kernel(cluster)
        sockets = yield defer.gatherResults([connect(daemon.ws_url, kernel_id) for daemon in cluster.daemons])
        yield sockets[0].execute("x = 7")

        yield cluster.redis.stop()
        for client in cluster.clients:
            yield poll_until(
                lambda c=client: c.request("GET", "/readyz").addCallback(lambda r: r[0] == 503 and not r[2]["checks"]["kernel store"]),
                timeout=15,
            )
            status, _, body = yield client.request("POST", "/api/kernels", {})
            self.assertEqual(status, 503, body)
            self.assertIn("Redis store at redis://127.0.0.1", body["message"])
            status, _, body = yield client.request("GET", "/api/kernels/00000000-0000-0000-0000-000000000000")
            self.assertEqual(status, 503, body)
            self.assertNotIn(PASSWORD, str(body))
        for ws in sockets:
            self.assertEqual(stream_text((yield ws.execute("print(x)"))), "7\n")

        yield cluster.redis.start()
        for client in cluster.clients:
            yield poll_until(lambda c=client: c.request("GET", "/readyz").addCallback(lambda r: r[0] == 200), timeout=30)
            status, _, model = yield client.request("GET", f"/api/kernels/{kernel_id}")
            self.assertEqual((status, model["id"]), (200, kernel_id))
        owner = yield poll_until(lambda: cluster.owner(kernel_id).addCallback(lambda i: i is not None and (i,)), timeout=30)
        self.assertIn(owner[0], (0, 1))
        self.assertEqual(cluster.kernel_pids(), [pid])
        self.assertTrue(pid_alive(pid))
        for ws in sockets:
            self.assertEqual(stream_text((yield ws.execute("print(x)"))), "7\n")
        self.assertEqual([ws.close_code for ws in sockets], [None, None], "no WebSocket was closed")
        for client in cluster.clients:
            _, _, metrics = yield client.request("GET", "/metrics")
            self.assertNotIn(PASSWORD.encode(), metrics)
            self.assertNotIn(PASSWORD.encode(), client.daemon.log)

