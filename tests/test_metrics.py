"""Metrics: log events and relay calls become Prometheus samples in the daemon's own registry."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import REGISTRY
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogPublisher, Logger, capturedLogs
from twisted.trial import unittest

from kgd.gateway import Gateway
from kgd.kernels.kernels import Kernels
from kgd.metrics import Metrics, MetricsService
from kgd.options import default_config
from kgd.service import build_site
from tests.kernels.fakes import fake_machine


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The value of one sample, or None if the registry has no such sample."""
    return metrics.registry.get_sample_value(name, labels)


class LogEventTests(unittest.TestCase):
    """Each structured event kgd logs moves its metric."""

    def setUp(self) -> None:
        self.metrics = Metrics()

    def test_kernel_lifecycle(self) -> None:
        """Starts, start latency, failures, restarts by reason and deaths are counted by kernelspec."""
        m = self.metrics
        m({"event": "kernel_started", "spec_name": "python3", "duration_ms": 1500.0})
        m({"event": "kernel_started", "spec_name": "python3", "duration_ms": 700.0})
        m({"event": "kernel_start_failed", "spec_name": "bash"})
        m({"event": "kernel_restarted", "spec_name": "python3", "reason": "request"})
        m({"event": "kernel_restarted", "spec_name": "python3", "reason": "died"})
        m({"event": "kernel_died", "spec_name": "python3"})
        self.assertEqual(sample(m, "kgd_kernel_starts_total", kernelspec="python3"), 2)
        self.assertEqual(sample(m, "kgd_kernel_start_seconds_count", kernelspec="python3"), 2)
        self.assertAlmostEqual(sample(m, "kgd_kernel_start_seconds_sum", kernelspec="python3"), 2.2)
        self.assertEqual(sample(m, "kgd_kernel_start_seconds_bucket", kernelspec="python3", le="1.0"), 1)
        self.assertEqual(sample(m, "kgd_kernel_start_failures_total", kernelspec="bash"), 1)
        self.assertEqual(sample(m, "kgd_kernel_restarts_total", kernelspec="python3", reason="request"), 1)
        self.assertEqual(sample(m, "kgd_kernel_restarts_total", kernelspec="python3", reason="died"), 1)
        self.assertEqual(sample(m, "kgd_kernel_deaths_total", kernelspec="python3"), 1)

    def test_http_requests_by_route(self) -> None:
        """Access-log events count requests by method, route template and status, with their latency."""
        m = self.metrics
        event = {"event": "http_request", "method": "GET", "route": "/api/kernels/<kernel_id>", "status": 200}
        m({**event, "duration_ms": 2.0})
        m({**event, "duration_ms": 4.0})
        m({"event": "http_request", "method": "GET", "route": None, "status": 404, "duration_ms": 1.0})
        self.assertEqual(
            sample(m, "kgd_http_requests_total", method="GET", route="/api/kernels/<kernel_id>", status="200"), 2
        )
        self.assertEqual(sample(m, "kgd_http_requests_total", method="GET", route="other", status="404"), 1)
        self.assertAlmostEqual(
            sample(m, "kgd_http_request_duration_seconds_sum", method="GET", route="/api/kernels/<kernel_id>"), 0.006
        )

    def test_bad_signatures_counted(self) -> None:
        """A kernel message dropped for a bad signature is counted by channel."""
        self.metrics({"event": "bad_signature", "kernel_id": "k", "channel": "iopub"})
        self.metrics({"event": "bad_signature", "kernel_id": "k", "channel": "iopub"})
        self.assertEqual(sample(self.metrics, "kgd_bad_signatures_total", channel="iopub"), 2)

    def test_other_events_ignored(self) -> None:
        """Events that stand for no metric change nothing."""
        before = self.metrics.exposition()
        self.metrics({"event": "kernel_output", "kernel_id": "k"})
        self.metrics({"log_format": "plain text"})
        self.assertEqual(self.metrics.exposition(), before)


class ScrapedSourceTests(unittest.TestCase):
    """Values read when scraped: kernels, connections, queue depth; values pushed by the relay."""

    def test_kernels_by_kernelspec_and_connections(self) -> None:
        """Running kernels are counted per kernelspec and their WebSocket connections summed, at scrape time."""
        metrics = Metrics()
        kernels = [SimpleNamespace(spec_name="python3", connections=2), SimpleNamespace(spec_name="ir", connections=0)]
        metrics.watch_kernels(lambda: kernels)
        kernels.append(SimpleNamespace(spec_name="python3", connections=1))
        self.assertEqual(sample(metrics, "kgd_kernels_running", kernelspec="python3"), 2)
        self.assertEqual(sample(metrics, "kgd_kernels_running", kernelspec="ir"), 1)
        self.assertEqual(sample(metrics, "kgd_websocket_connections"), 3)

    def test_queue_depth(self) -> None:
        """The notebook-http queue depth is whatever the registered callable says when scraped."""
        metrics = Metrics()
        queue = [1, 2, 3]
        metrics.watch_queue_depth(lambda: len(queue))
        queue.pop()
        self.assertEqual(sample(metrics, "kgd_notebook_http_queue_depth"), 2)

    def test_messages_relayed(self) -> None:
        """The relay counts messages and bytes by channel and direction."""
        metrics = Metrics()
        metrics.message_relayed("shell", "in", 100)
        metrics.message_relayed("shell", "in", 50)
        metrics.message_relayed("iopub", "out", 10)
        self.assertEqual(sample(metrics, "kgd_websocket_messages_total", channel="shell", direction="in"), 2)
        self.assertEqual(sample(metrics, "kgd_websocket_bytes_total", channel="shell", direction="in"), 150)
        self.assertEqual(sample(metrics, "kgd_websocket_bytes_total", channel="iopub", direction="out"), 10)

    def test_registries_are_per_daemon(self) -> None:
        """Two Metrics never share samples, and neither touches prometheus_client's global registry."""
        first, second = Metrics(), Metrics()
        first.message_relayed("shell", "in", 1)
        self.assertIsNone(sample(second, "kgd_websocket_messages_total", channel="shell", direction="in"))
        self.assertIsNone(REGISTRY.get_sample_value("kgd_websocket_messages_total", {"channel": "shell", "direction": "in"}))

    def test_exposition_is_prometheus_text(self) -> None:
        """The scrape body is Prometheus' text format with HELP and TYPE lines."""
        body = Metrics().exposition().decode()
        self.assertIn("# TYPE kgd_kernel_starts_total counter", body)
        self.assertIn("# TYPE kgd_http_request_duration_seconds histogram", body)


class MetricsServiceTests(unittest.TestCase):
    """The observer is attached only while the daemon runs."""

    def test_observes_while_running(self) -> None:
        """Events logged between start and stop are counted; after stop they are not."""
        publisher = LogPublisher()
        log = Logger(observer=publisher)
        metrics = Metrics()
        service = MetricsService(metrics, publisher)
        log.info("before", event="kernel_died", spec_name="python3")
        service.startService()
        log.info("during", event="kernel_died", spec_name="python3")
        service.stopService()
        log.info("after", event="kernel_died", spec_name="python3")
        self.assertEqual(sample(metrics, "kgd_kernel_deaths_total", kernelspec="python3"), 1)


class LabelAbuseTests(unittest.SynchronousTestCase):
    """Made-up methods and paths, from anyone who can reach the port, never mint label values."""

    def setUp(self) -> None:
        machine = fake_machine(self.mktemp())
        kernels = Kernels(machine.specs, machine.launcher, machine.sockets, machine.clock)
        settings = default_config(auth_token="s3cret")
        gateway = Gateway(kernels, machine.specs, machine.clock)
        self.site = build_site(settings, gateway)
        self.metrics = gateway.metrics

    def send(self, method: bytes, path: bytes) -> None:
        """One request over a real HTTP channel, logged by the site and counted by the metrics."""
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        channel.makeConnection(StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8888)))
        with capturedLogs() as events:
            channel.dataReceived(method + b" " + path + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        for event in events:
            self.metrics(event)

    def label_sets(self) -> set[tuple[str, frozenset]]:
        found = set()
        for family in self.metrics.registry.collect():
            if family.name.startswith("kgd_http_"):
                for s in family.samples:
                    found.add((s.name, frozenset((k, v) for k, v in s.labels.items() if k != "le")))
        return found

    def test_bogus_methods_and_paths_add_no_labels(self) -> None:
        """After one made-up method and path, 1000 more distinct ones leave the label sets as they were."""
        self.send(b"MABC0", b"/api/kernels")
        self.send(b"GET", b"/nowhere/0")
        self.send(b"GET", b"/api/kernels/0/nothing")
        before = self.label_sets()
        for n in range(1, 1001):
            self.send(b"MABC%d" % n, b"/api/kernels")
            self.send(b"GET", b"/nowhere/%d" % n)
            self.send(b"X%d" % n, b"/x%d/%d" % (n, n))
        self.assertEqual(self.label_sets(), before)
        self.assertEqual(sample(self.metrics, "kgd_http_requests_total", method="other", route="other", status="401"), 2001)
