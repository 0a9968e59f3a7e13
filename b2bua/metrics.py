"""Prometheus metrics, read from the components' own counters at scrape time.

Nothing is updated on the signalling or media hot path for Prometheus' sake: a
custom collector turns the plain counters of the stack, call control and media
engine into metric families when ``/metrics`` is scraped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterator

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

if TYPE_CHECKING:
    from .app import Application

log = logging.getLogger("b2bua.metrics")


class B2buaCollector:
    """Everything /metrics shows."""

    def __init__(self, app: "Application"):
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        b2b, stack = app.b2bua, app.stack
        g = GaugeMetricFamily("b2bua_active_calls", "Calls in progress")
        g.add_metric([], len(b2b.calls))
        yield g
        attempts = CounterMetricFamily("b2bua_call_attempts", "New calls per route", labels=["route"])
        answered = CounterMetricFamily("b2bua_calls_answered", "Answered calls per route", labels=["route"])
        ended = CounterMetricFamily("b2bua_calls_ended", "Finished calls per route and end cause",
                                    labels=["route", "cause"])
        for (route, what), n in sorted(b2b.by_route.items()):
            if what == "attempts":
                attempts.add_metric([route], n)
            elif what == "answered":
                answered.add_metric([route], n)
            elif what.startswith("end:"):
                ended.add_metric([route, what[4:]], n)
        yield attempts
        yield answered
        yield ended
        responses = CounterMetricFamily("b2bua_responses_sent", "SIP responses sent by call control",
                                        labels=["code"])
        for code, n in sorted(b2b.responses.items()):
            responses.add_metric([str(code)], n)
        yield responses
        buckets, acc = [], 0
        for bound, n in zip(b2b.setup_buckets, b2b.setup_counts):
            acc += n
            buckets.append((repr(bound), acc))
        buckets.append(("+Inf", acc + b2b.setup_counts[-1]))
        h = HistogramMetricFamily("b2bua_call_setup_seconds", "INVITE received to 2xx sent")
        h.add_metric([], buckets, b2b.setup_sum)
        yield h
        rejects = CounterMetricFamily("b2bua_overload_rejections", "New calls refused with 503",
                                      labels=["reason"])
        rejects.add_metric(["event_loop_lag"], b2b.stats["overload_rejects"])
        rejects.add_metric(["media_ports"], b2b.stats["media_unavailable"])
        yield rejects
        sip = CounterMetricFamily("b2bua_sip_messages", "SIP messages by the transaction layer",
                                  labels=["what"])
        for key in ("received", "sent", "parse_errors", "retransmissions_received", "stray_responses", "merged"):
            sip.add_metric([key], stack.stats[key])
        yield sip
        tx = GaugeMetricFamily("b2bua_sip_transactions", "Live SIP transactions")
        tx.add_metric([], stack.transaction_count)
        yield tx
        dtmf = CounterMetricFamily("b2bua_dtmf_digits", "Key presses detected")
        dtmf.add_metric([], b2b.stats["dtmf"])
        yield dtmf
        if app.engine is not None:
            rtp = CounterMetricFamily("b2bua_rtp_packets", "RTP packets through the media engine",
                                      labels=["what"])
            for key, n in app.engine.counters.items():
                rtp.add_metric([key], n)
            yield rtp
            rec = CounterMetricFamily("b2bua_recording_files", "Recording files by the writer (written, "
                                      "failures: disk errors, dropped: frames lost while the writer was too "
                                      "far behind, a stalled disk)",
                                      labels=["result"])
            for key, n in getattr(app.engine, "recording_stats", {}).items():
                rec.add_metric([key], n)
            yield rec
        index = CounterMetricFamily("b2bua_recordings", "Recordings indexed (started, complete, failed, repaired)",
                                    labels=["result"])
        for key in ("started", "complete", "failed", "repaired", "index_errors"):
            index.add_metric([key], app.recordings.counts[key])
        yield index
        prot = CounterMetricFamily("b2bua_staff_protection", "Staff protection actions (situations of "
                                   "citizens' calls, notices, ringbacks, releases, staff keys)", labels=["what"])
        for key, n in sorted(app.protection.stats.items()):
            prot.add_metric([key], n)
        yield prot
        if app.engine is not None:
            ports = GaugeMetricFamily("b2bua_rtp_free_port_pairs", "Free RTP/RTCP port pairs")
            ports.add_metric([], app.engine.free_ports)
            yield ports
        router = app.router
        refused = CounterMetricFamily("b2bua_routing_rejections", "Calls refused by routing",
                                      labels=["reason"])
        for reason, n in sorted(router.rejected.items()):
            refused.add_metric([reason], n)
        yield refused
        trunk_calls = GaugeMetricFamily("b2bua_trunk_active_calls", "Calls in progress per source trunk",
                                        labels=["trunk"])
        for trunk in router.trunks:
            trunk_calls.add_metric([trunk], router.active[trunk])
        yield trunk_calls
        trunk_attempts = CounterMetricFamily("b2bua_trunk_call_attempts", "New calls accepted per source trunk",
                                             labels=["trunk"])
        for trunk in router.trunks:
            trunk_attempts.add_metric([trunk], router.attempts[trunk])
        yield trunk_attempts
        gw = GaugeMetricFamily("b2bua_gateway_up", "1 when the gateway answers OPTIONS pings", labels=["gateway"])
        for trunk in app.config.routing.trunks:
            if trunk.options_ping is not None:
                for g in trunk.gateways:
                    gw.add_metric([g.uri], 0 if g.uri in router.down else 1)
        yield gw
        reloads = CounterMetricFamily("b2bua_config_reloads", "Configuration reloads", labels=["result"])
        reloads.add_metric(["ok"], app.reloads["ok"])
        reloads.add_metric(["failed"], app.reloads["failed"])
        yield reloads
        cdr = CounterMetricFamily("b2bua_cdr_rows", "CDR rows", labels=["result"])
        cdr.add_metric(["written"], app.cdr.written)
        cdr.add_metric(["write_failures"], app.cdr.failures)
        yield cdr
        hook = getattr(app, "messenger", None)
        if hook is not None:
            notices = CounterMetricFamily("b2bua_messenger_notices", "Messenger hook notices by outcome "
                                          "(queued, sent, failed, dropped, retries, errors, http_<code>)",
                                          labels=["result"])
            for key in ("queued", "sent", "failed", "dropped", "retries", "errors"):
                notices.add_metric([key], hook.counters[key])
            for key, n in sorted(hook.counters.items()):
                if key.startswith("http_"):
                    notices.add_metric([key], n)
            yield notices
            depth = GaugeMetricFamily("b2bua_messenger_queue", "Messenger notices waiting to be sent")
            depth.add_metric([], hook.queued)
            yield depth
        if app.server is not None:
            lag = GaugeMetricFamily("b2bua_event_loop_lag_seconds", "How late the event loop ran, last sample")
            lag.add_metric([], app.server.lag)
            yield lag


def serve(app: "Application", address: str) -> CollectorRegistry:
    """Expose /metrics on ``host:port`` from a small thread (prometheus_client's server)."""
    registry = CollectorRegistry()
    registry.register(B2buaCollector(app))  # type: ignore[arg-type]
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
    log.info("metrics on http://%s/metrics", address)
    return registry
