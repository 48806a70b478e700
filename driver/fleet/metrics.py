"""Prometheus metrics of the fleet (prometheus-client), one registry per component.

Worker (``comfy-avatar worker --metrics-port P``, GET /metrics there):
    comfy_avatar_worker_jobs_total{workflow,priority,outcome}    jobs ended (succeeded/retry/dead/...)
    comfy_avatar_worker_failures_total{failure_class}            why jobs failed (JobFailed:RuntimeError, ...)
    comfy_avatar_worker_job_duration_seconds{workflow}           histogram, succeeded jobs
    comfy_avatar_worker_node_duration_seconds{node_type}         histogram, per node as the client saw it
    comfy_avatar_worker_jobs_in_flight                           gauge
    comfy_avatar_worker_concurrency                              gauge (the --concurrency)
    comfy_avatar_worker_broker_connected                         gauge 0/1 (worker health)
    comfy_avatar_worker_last_heartbeat_timestamp_seconds         gauge: the connection loop is alive
    comfy_avatar_queue_depth{queue}                              gauge: messages ready (autoscale on this)

serve (GET /metrics, no API key: scrapers run inside the network):
    comfy_avatar_jobs{state}                                     job records by state (read at scrape)
    comfy_avatar_queue_depth{queue}                              read from the broker at scrape
    comfy_avatar_api_jobs_submitted_total{priority}
    comfy_avatar_api_requests_total{method,route,status}
    comfy_avatar_api_refused_uploads_total{reason}

Labels are bounded (workflow names, node class names, error classes, priorities): never job
ids, file names or anything a user types freely.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("comfy_avatar.driver.fleet.metrics")

_DURATIONS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def _workflow_label(name: str) -> str:
    """A bounded workflow label: the file's stem (workflows/x.api.json -> x)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".api.json", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base[:64] or "inline"


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self._workflows: set[str] = set()
        self.jobs = Counter(
            "comfy_avatar_worker_jobs_total",
            "Jobs ended by this worker",
            ["workflow", "priority", "outcome"],
            registry=r,
        )
        self.failures = Counter(
            "comfy_avatar_worker_failures_total", "Job failures by class", ["failure_class"], registry=r
        )
        self.job_seconds = Histogram(
            "comfy_avatar_worker_job_duration_seconds",
            "Duration of succeeded jobs",
            ["workflow"],
            buckets=_DURATIONS,
            registry=r,
        )
        self.node_seconds = Histogram(
            "comfy_avatar_worker_node_duration_seconds", "Node durations", ["node_type"], buckets=_DURATIONS, registry=r
        )
        self.in_flight = Gauge("comfy_avatar_worker_jobs_in_flight", "Jobs running now", registry=r)
        self.concurrency = Gauge("comfy_avatar_worker_concurrency", "Jobs this worker runs at once", registry=r)
        self.broker_up = Gauge("comfy_avatar_worker_broker_connected", "1 while connected to the broker", registry=r)
        self.heartbeat = Gauge(
            "comfy_avatar_worker_last_heartbeat_timestamp_seconds",
            "Last turn of the worker's connection loop",
            registry=r,
        )
        self.queue_depth = Gauge("comfy_avatar_queue_depth", "Messages ready in a queue", ["queue"], registry=r)

    def ended(
        self,
        workflow: str,
        priority: str,
        outcome: str,
        failure: str = "",
        duration_s: float = 0.0,
        timings: dict[str, float] | None = None,
        node_types: dict[str, str] | None = None,
    ) -> None:
        wf = _workflow_label(workflow)
        # whoever submits names the workflow: past 100 distinct names the rest count as
        # "other", so a submitter cannot grow the scrape (and Prometheus) without end
        if wf not in self._workflows:
            if len(self._workflows) >= 100:
                wf = "other"
            else:
                self._workflows.add(wf)
        self.jobs.labels(wf, priority, outcome).inc()
        if failure:
            self.failures.labels(failure[:80]).inc()
        if outcome == "succeeded":
            self.job_seconds.labels(wf).observe(duration_s)
            for node, secs in (timings or {}).items():
                self.node_seconds.labels((node_types or {}).get(node, "?")[:80]).observe(secs)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
        log.info("worker metrics on http://%s:%d/metrics", addr, port)

    def beat(self) -> None:
        self.heartbeat.set(time.time())


class _ReadAtScrape(Collector):
    """Job counts and queue depth read when Prometheus scrapes (no stale copies)."""

    def __init__(self, counts: Callable[[], dict[str, int]], depth: Callable[[], dict[str, int]]) -> None:
        self._counts, self._depth = counts, depth

    def collect(self) -> Iterator[Any]:
        jobs = GaugeMetricFamily("comfy_avatar_jobs", "Job records by state", labels=["state"])
        try:
            for state, n in sorted(self._counts().items()):
                jobs.add_metric([state], n)
        except Exception as e:  # noqa: BLE001 - a scrape must not fail because the DB hiccups
            log.warning("metrics: could not count jobs: %s", e)
        yield jobs
        depth = GaugeMetricFamily("comfy_avatar_queue_depth", "Messages ready in a queue", labels=["queue"])
        try:
            for q, n in sorted(self._depth().items()):
                depth.add_metric([q], n)
        except Exception as e:  # noqa: BLE001
            log.warning("metrics: could not read the queue depth: %s", e)
        yield depth


class ApiMetrics:
    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        depth: Callable[[], dict[str, int]],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = r = registry or CollectorRegistry()
        r.register(_ReadAtScrape(counts, depth))
        self.submitted = Counter(
            "comfy_avatar_api_jobs_submitted_total", "Jobs submitted over HTTP", ["priority"], registry=r
        )
        self.requests = Counter(
            "comfy_avatar_api_requests_total", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.refused = Counter("comfy_avatar_api_refused_uploads_total", "Uploads refused", ["reason"], registry=r)
