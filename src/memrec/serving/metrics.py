"""Prometheus metrics of the service (``GET /metrics``): requests and latency per route, events
applied, state-store errors.

With several ``--workers`` the CLI sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start, and
an exposition gathers every worker's files (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

REQUESTS = Counter("memrec_requests", "HTTP requests", ["route", "method", "status"])
LATENCY = Histogram("memrec_request_seconds", "HTTP request latency", ["route", "method"],
                    buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5))
EVENTS = Counter("memrec_events_applied", "events applied to user memories")
STORE_ERRORS = Counter("memrec_store_errors", "state-store operations that failed")


def observe(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route, method).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus's text format, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


__all__ = ["REQUESTS", "LATENCY", "EVENTS", "STORE_ERRORS", "observe", "exposition"]
