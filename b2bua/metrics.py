"""Prometheus metrics, read from the components' own counters at scrape time.

Nothing is updated on the signalling or media hot path for Prometheus' sake: a
custom collector turns the plain counters of the stack, call control and media
engine into metric families when ``/metrics`` is scraped.

What is read is described by :class:`MetricsSource` (the application satisfies it), so this
module does not depend on the application that wires the components together.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Protocol

from prometheus_client import PROCESS_COLLECTOR, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .transport.limits import HITS

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("b2bua.metrics")


# -- what the collector reads -----------------------------------------------------------------
# Read-only properties, so that plain attributes (and subtypes: a Counter for a Mapping) satisfy them.
class _Stats(Protocol):
    """A component with a ``stats`` counter (staff protection)."""

    @property
    def stats(self) -> Mapping[str, int]: ...


class _Hep(Protocol):
    """The HEP exporter's counters."""

    @property
    def sent(self) -> int: ...
    @property
    def dropped(self) -> int: ...


class _CallControl(Protocol):
    """Call control's counters."""

    @property
    def calls(self) -> Sized: ...
    @property
    def stats(self) -> Mapping[str, int]: ...
    @property
    def by_route(self) -> Mapping[tuple[str, str], int]: ...
    @property
    def responses(self) -> Mapping[int, int]: ...
    @property
    def setup_buckets(self) -> Sequence[float]: ...
    @property
    def setup_counts(self) -> Sequence[int]: ...
    @property
    def setup_sum(self) -> float: ...


class _Stack(Protocol):
    """The SIP transaction layer's counters."""

    @property
    def stats(self) -> Mapping[str, int]: ...
    @property
    def transaction_count(self) -> int: ...
    @property
    def now(self) -> float: ...


class _Engine(Protocol):
    """The media engine (in process or workers); ``recording_stats`` is read when it has one."""

    @property
    def counters(self) -> Mapping[str, int]: ...
    @property
    def free_ports(self) -> int: ...


class _RecordingIndex(Protocol):
    @property
    def counts(self) -> Mapping[str, int]: ...


class _Router(Protocol):
    """Routing's counters: per reason, per source trunk, and the gateways marked down."""

    @property
    def rejected(self) -> Mapping[str, int]: ...
    @property
    def trunks(self) -> Iterable[str]: ...
    @property
    def active(self) -> Mapping[str, int]: ...
    @property
    def attempts(self) -> Mapping[str, int]: ...
    @property
    def down(self) -> Container[str]: ...


class _Cdr(Protocol):
    @property
    def written(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def dropped(self) -> int: ...


class _Messenger(Protocol):
    @property
    def counters(self) -> Mapping[str, int]: ...
    @property
    def queued(self) -> int: ...


class _Connections(Protocol):
    @property
    def hits(self) -> Mapping[str, int]: ...


class _GcPacer(Protocol):
    @property
    def full_passes(self) -> int: ...
    @property
    def last_pause(self) -> float: ...


class _Server(Protocol):
    @property
    def lag(self) -> float: ...
    @property
    def connections(self) -> _Connections: ...
    @property
    def stream_connections(self) -> Mapping[str, int]: ...
    @property
    def pending_dns(self) -> int: ...


class _Nonces(Protocol):
    @property
    def evictions(self) -> int: ...


class _Detection(Protocol):
    """Abuse detection's processes (their counters, summed)."""

    def totals(self) -> Mapping[str, int]: ...


class _Evidence(Protocol):
    @property
    def counts(self) -> Mapping[str, int]: ...


class _Gate(Protocol):
    @property
    def stats(self) -> Mapping[str, int]: ...
    @property
    def tracked(self) -> int: ...
    def bans(self, now: float) -> Sized: ...


class MetricsSource(Protocol):
    """Everything /metrics reads: the components of one B2BUA process (``b2bua.app.Application``)."""

    @property
    def config(self) -> Config: ...
    @property
    def b2bua(self) -> _CallControl: ...
    @property
    def stack(self) -> _Stack: ...
    @property
    def engine(self) -> _Engine | None: ...
    @property
    def recordings(self) -> _RecordingIndex: ...
    @property
    def protection(self) -> _Stats: ...
    @property
    def router(self) -> _Router: ...
    @property
    def reloads(self) -> Mapping[str, int]: ...
    @property
    def cdr(self) -> _Cdr: ...
    @property
    def messenger(self) -> _Messenger | None: ...
    @property
    def server(self) -> _Server | None: ...
    @property
    def abuse(self) -> _Stats: ...
    @property
    def detection(self) -> _Detection | None: ...
    @property
    def abuse_events(self) -> _Evidence: ...
    @property
    def hep(self) -> _Hep | None: ...
    @property
    def gate(self) -> _Gate: ...
    @property
    def auth(self) -> _Nonces: ...
    @property
    def gc_pacer(self) -> _GcPacer: ...


# -- the collector ----------------------------------------------------------------------------
class B2buaCollector:
    """Everything /metrics shows."""

    def __init__(self, app: MetricsSource):
        self.app = app

    @staticmethod
    def _media_workers(engine: _Engine) -> Iterator[Metric]:
        """The media worker processes' load and deaths (nothing when the engine runs in this process)."""
        sessions: Mapping[int, int] | None = getattr(engine, "worker_sessions", None)
        if sessions is None:
            return
        load = GaugeMetricFamily("b2bua_media_worker_sessions", "Media sessions each live worker process carries "
                                 "(a worker fills to media.worker_fill_calls before the next takes new ones)",
                                 labels=["worker"])
        for w, n in sorted(sessions.items()):
            load.add_metric([str(w)], n)
        yield load
        gone = GaugeMetricFamily("b2bua_media_workers_gone", "Media worker processes that died (their calls lost "
                                 "their media; new calls go to the others)")
        gone.add_metric([], getattr(engine, "workers_gone", 0))
        yield gone

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
        for bound, n in zip(b2b.setup_buckets, b2b.setup_counts, strict=False):  # the last count is +Inf
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
        yield from self._gate(app)
        yield from self._limits(app)
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
        index = CounterMetricFamily("b2bua_recordings", "Recordings indexed (started, complete, failed, repaired; "
                                    "purged: past their department's retention)", labels=["result"])
        for key in ("started", "complete", "failed", "repaired", "index_errors", "purged"):
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
            yield from self._media_workers(app.engine)
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
        for pinged in app.config.routing.trunks:
            if pinged.options_ping is not None:
                for gateway in pinged.gateways:
                    gw.add_metric([gateway.uri], 0 if gateway.uri in router.down else 1)
        yield gw
        reloads = CounterMetricFamily("b2bua_config_reloads", "Configuration reloads", labels=["result"])
        reloads.add_metric(["ok"], app.reloads["ok"])
        reloads.add_metric(["failed"], app.reloads["failed"])
        yield reloads
        cdr = CounterMetricFamily("b2bua_cdr_rows", "CDR rows", labels=["result"])
        cdr.add_metric(["written"], app.cdr.written)
        cdr.add_metric(["write_failures"], app.cdr.failures)
        cdr.add_metric(["dropped"], app.cdr.dropped)  # refused by the database on their own (logged)
        yield cdr
        hook = app.messenger
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
        yield from self._abuse(app)
        if app.hep is not None:
            hep = CounterMetricFamily("b2bua_hep", "SIP messages exported to the HEP collector", labels=["result"])
            hep.add_metric(["sent"], app.hep.sent)
            hep.add_metric(["dropped"], app.hep.dropped)
            yield hep
        if app.server is not None:
            lag = GaugeMetricFamily("b2bua_event_loop_lag_seconds", "How late the event loop ran, last sample")
            lag.add_metric([], app.server.lag)
            yield lag
        passes = CounterMetricFamily("b2bua_gc_full_passes", "Full passes of the cyclic GC (b2bua/gc_pacer.py)")
        passes.add_metric([], app.gc_pacer.full_passes)
        yield passes
        pause = GaugeMetricFamily("b2bua_gc_last_full_pause_seconds", "How long the last full GC pass held the loop")
        pause.add_metric([], app.gc_pacer.last_pause)
        yield pause


    @staticmethod
    def _gate(app: MetricsSource) -> Iterator[Metric]:
        """The front gate: requests refused by reason (scanner, banned, rate:<method>), failed logins, bans."""
        gate = app.gate
        done = CounterMetricFamily("b2bua_gate", "Front gate: refused:<reason> (scanner, banned, rate:<method>), "
                                   "auth_failures, bans, bans_lifted, bans_expired, sources_evicted, bans_evicted",
                                   labels=["what"])
        for key, n in sorted(gate.stats.items()):
            done.add_metric([key], n)
        yield done
        banned = GaugeMetricFamily("b2bua_gate_banned_sources", "Addresses banned now")
        banned.add_metric([], len(gate.bans(app.stack.now)))
        yield banned
        tracked = GaugeMetricFamily("b2bua_gate_tracked_sources", "Address and method buckets the gate keeps")
        tracked.add_metric([], gate.tracked)
        yield tracked

    @staticmethod
    def _limits(app: MetricsSource) -> Iterator[Metric]:
        """Every bound on state an outsider can make us hold, each time it was hit; the connections now."""
        hits = CounterMetricFamily(
            "b2bua_limit_hits", "Bounds hit: transactions (stateless 503), nonces (oldest forgotten), "
            "tracked_sources (gate table full), connections_total / connections_per_source (refused), idle / "
            "slow_sender / write_buffer (closed), dns_pending / dns_waiting (send failed), tls_client_cert "
            "(a mutual-TLS trunk's address without the certificate: closed)", labels=["limit"])
        counts: dict[str, int] = {"transactions": app.stack.stats.get("limit:transactions", 0),
                                  "nonces": app.auth.evictions,
                                  "tracked_sources": app.gate.stats.get("sources_evicted", 0)}
        if app.server is not None:
            for key in HITS:
                counts[key] = app.server.connections.hits.get(key, 0)
        for key, n in counts.items():
            hits.add_metric([key], n)
        yield hits
        if app.server is not None:
            conns = GaugeMetricFamily("b2bua_stream_connections", "Open TCP/TLS connections", labels=["transport"])
            for transport, n in sorted(app.server.stream_connections.items()):
                conns.add_metric([transport], n)
            yield conns
            dns = GaugeMetricFamily("b2bua_dns_pending", "Host names being looked up")
            dns.add_metric([], app.server.pending_dns)
            yield dns

    @staticmethod
    def _abuse(app: MetricsSource) -> Iterator[Metric]:
        """Abuse detection: the policy's actions, the processes' work and drops, the evidence written."""
        policy = CounterMetricFamily("b2bua_abuse", "Abuse detection (monitored calls, utterances judged, "
                                     "warned, terminated, shouting, reported, events:<action>)", labels=["what"])
        for key, n in sorted(app.abuse.stats.items()):
            policy.add_metric([key], n)
        yield policy
        if app.detection is not None:
            totals = app.detection.totals()
            work = CounterMetricFamily("b2bua_detection", "Detection processes (streams, utterances, "
                                       "detections, errors, jobs_dropped: utterances a busy recognizer lost; "
                                       "external_requests/failures/fallbacks: the external speech server)",
                                       labels=["what"])
            for key, n in sorted(totals.items()):
                if key != "active_streams":
                    work.add_metric([key], n)
            yield work
            streams = GaugeMetricFamily("b2bua_detection_streams", "Legs the segmenter follows now")
            streams.add_metric([], totals.get("active_streams", 0))
            yield streams
        evidence = CounterMetricFamily("b2bua_abuse_evidence", "Abuse events stored (written; clips_completed: "
                                       "whole clips with 2 s after the utterance; failures)", labels=["result"])
        for key in ("written", "clips_completed", "failures"):
            evidence.add_metric([key], app.abuse_events.counts[key])
        yield evidence


def registry(app: MetricsSource) -> CollectorRegistry:
    """What /metrics shows (served by the admin listener, :mod:`b2bua.admin`): the B2BUA's own families and
    the standard ``process_*`` ones (CPU, memory, open files, start time)."""
    reg = CollectorRegistry()
    reg.register(B2buaCollector(app))
    reg.register(PROCESS_COLLECTOR)
    return reg
