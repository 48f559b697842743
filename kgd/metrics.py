"""Prometheus metrics for one daemon, in a registry of its own.

Most numbers are derived from the structured log events kgd already emits
(``event="kernel_started"``, ``"kernel_restarted"``, ``"kernel_died"``,
``"kernel_start_failed"``, ``"kernel_adopted"``, ``"kernel_lost"``, ``"http_request"``): ``Metrics`` is a log observer,
so the metrics and the log can never disagree and the kernel and web layers
need no knowledge of Prometheus.  Two things are read when scraped instead:
kernels running by kernelspec and open WebSocket connections (from
``Kernels``), and the notebook-http queue depth (from a callable its pool
registers).  The WebSocket relay is the hot path and too busy for log
events: it calls ``message_relayed(channel, direction, nbytes)`` directly.

``MetricsService`` attaches the observer to a log publisher while the
daemon runs.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.application.service import Service
from twisted.logger import ILogObserver, LogPublisher
from zope.interface import implementer

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: HTTP methods counted under their own name; any other method is counted as ``other``,
#: so a client inventing methods cannot mint label values (each one costs memory and scrape time).
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The label of a method outside ``HTTP_METHODS``, and of a request no route answered.
OTHER = "other"

# Kernel start takes seconds; requests take milliseconds.
_START_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _KernelsCollector:
    """Reads the running kernels when scraped."""

    def __init__(self, kernels: Callable[[], Iterable[Any]]) -> None:
        self._kernels = kernels

    def collect(self) -> Iterable[GaugeMetricFamily]:
        kernels = list(self._kernels())
        running = GaugeMetricFamily("kgd_kernels_running", "Kernels running, by kernelspec", labels=["kernelspec"])
        for name, count in sorted(Tally(k.spec_name for k in kernels).items()):
            running.add_metric([name], count)
        yield running
        yield GaugeMetricFamily(
            "kgd_websocket_connections",
            "Open channels WebSocket connections",
            value=sum(getattr(k, "connections", 0) for k in kernels),
        )


@implementer(ILogObserver)
class _RelayCounts:
    """Messages and bytes relayed over channels WebSockets, per channel and direction.

    Counted for every frame of every connection (an iopub message to 5,000
    connections is 5,000 counts), so they are plain ints, not prometheus
    Counters with a lock per increment; only the reactor thread counts and
    scrapes, and a scrape reads them as counter families.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], list[int]] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = (
            CounterMetricFamily("kgd_websocket_messages", "Messages relayed over channels WebSockets", labels=_RELAY_LABELS),
            CounterMetricFamily("kgd_websocket_bytes", "Bytes relayed over channels WebSockets", labels=_RELAY_LABELS),
        )
        for labels, values in sorted(self.counts.items()):
            for family, value in zip(families, values):
                family.add_metric(labels, value)
        yield from families


_RELAY_LABELS = ("channel", "direction")


class Metrics:
    """Every metric of one daemon; call it with log events, scrape it with ``exposition()``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.kernel_starts = Counter("kgd_kernel_starts", "Kernels started", ["kernelspec"], registry=r)
        self.kernel_start_failures = Counter(
            "kgd_kernel_start_failures", "Kernels that failed to start", ["kernelspec"], registry=r
        )
        self.kernel_restarts = Counter(
            "kgd_kernel_restarts", "Kernel restarts, asked for or after a death", ["kernelspec", "reason"], registry=r
        )
        self.kernel_deaths = Counter("kgd_kernel_deaths", "Unexpected kernel process deaths", ["kernelspec"], registry=r)
        self.kernels_adopted = Counter(
            "kgd_kernels_adopted", "Kernels an earlier daemon left running, taken over at start", registry=r
        )
        self.kernels_lost = Counter(
            "kgd_kernels_lost", "Recorded kernels that could not be adopted and were forgotten", registry=r
        )
        self.kernel_start_seconds = Histogram(
            "kgd_kernel_start_seconds",
            "Time from launch to a kernel answering kernel_info",
            ["kernelspec"],
            buckets=_START_BUCKETS,
            registry=r,
        )
        self._relayed = _RelayCounts()
        r.register(self._relayed)
        self.bad_signatures = Counter(
            "kgd_bad_signatures", "Kernel messages dropped for a bad HMAC signature", ["channel"], registry=r
        )
        self.http_requests = Counter(
            "kgd_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "kgd_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=_HTTP_BUCKETS,
            registry=r,
        )
        self.connections_refused = Counter(
            "kgd_connections_refused",
            "Channels WebSocket upgrades refused with 503 (reason: max_connections)",
            ["reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "kgd_notebook_http_queue_depth", "notebook-http requests waiting for a kernel", registry=r
        )

    # -- sources read when scraped ---------------------------------------------

    def watch_kernels(self, kernels: Callable[[], Iterable[Any]]) -> None:
        """Report kernels by kernelspec and WebSocket connections from ``kernels()`` at each scrape."""
        self.registry.register(_KernelsCollector(kernels))

    def watch_queue_depth(self, depth: Callable[[], float]) -> None:
        """Report the notebook-http queue depth as ``depth()`` at each scrape."""
        self.queue_depth.set_function(depth)

    # -- the WebSocket relay -----------------------------------------------------

    def message_relayed(self, channel: str, direction: str, nbytes: int) -> None:
        """Count one message on ``channel`` going ``direction`` ("in" from a client, "out" to one)."""
        counts = self._relayed.counts.get((channel, direction))
        if counts is None:
            counts = self._relayed.counts[(channel, direction)] = [0, 0]
        counts[0] += 1
        counts[1] += nbytes

    # -- log events --------------------------------------------------------------

    def __call__(self, event: dict[str, Any]) -> None:
        """Update the metrics a log event stands for; other events are ignored."""
        kind = event.get("event")
        if kind == "http_request":
            # Routes are the apps' templates or "other" (kgd.web.site.route_of): a closed set too.
            route = event.get("route") or OTHER
            method = str(event.get("method", ""))
            method = method if method in HTTP_METHODS else OTHER
            self.http_requests.labels(method, route, str(event.get("status", ""))).inc()
            self.http_seconds.labels(method, route).observe(float(event.get("duration_ms", 0.0)) / 1000)
            return
        spec = str(event.get("spec_name", ""))
        if kind == "kernel_started":
            self.kernel_starts.labels(spec).inc()
            if "duration_ms" in event:
                self.kernel_start_seconds.labels(spec).observe(float(event["duration_ms"]) / 1000)
        elif kind == "kernel_start_failed":
            self.kernel_start_failures.labels(spec).inc()
        elif kind == "kernel_restarted":
            self.kernel_restarts.labels(spec, str(event.get("reason", "request"))).inc()
        elif kind == "kernel_died":
            self.kernel_deaths.labels(spec).inc()
        elif kind == "kernel_adopted":
            self.kernels_adopted.inc()
        elif kind == "kernel_lost":
            self.kernels_lost.inc()
        elif kind == "bad_signature":
            self.bad_signatures.labels(str(event.get("channel", ""))).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsService(Service):
    """Feeds log events to ``Metrics`` while the daemon runs."""

    def __init__(self, metrics: Metrics, publisher: LogPublisher) -> None:
        self._metrics = metrics
        self._publisher = publisher

    def startService(self) -> None:
        super().startService()
        self._publisher.addObserver(self._metrics)

    def stopService(self) -> None:
        super().stopService()
        self._publisher.removeObserver(self._metrics)
