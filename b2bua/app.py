"""Wires the sans-I/O stack, call control, routing and the asyncio transports together."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from media.api import EngineControl, FinalStats, MediaEvent, RecordingDone
from media.archive import convert as convert_recording
from media.engine import EngineConfig, MediaEngine
from media.recorder import repair as repair_recording
from media.worker import WorkerEngine

from . import live_settings
from .admin import AdminServer, make_app
from .admin_auth import Authenticator, User
from .call.b2bua import B2BUA, B2BUAConfig, CallRecord
from .call.features import FeatureChain
from .call.journal import CallJournal
from .call.operator import OperatorControl
from .call.protection import StaffProtection
from .call.session import SessionTimerConfig
from .clock import Clock, wall_clock
from .config import Abuse, AdminUser, Config, ConfigError, Department, load_config
from .detection.events import Detection, EvidenceClip
from .detection.policy import AbuseProtection
from .detection.workers import detection_pool
from .gatekeeping import gate_config, source_of, tls_refusal
from .gc_pacer import GcPacer
from .hep import HepExporter
from .live_settings import changed, restart_needed
from .metrics import registry as metrics_registry
from .notify.messenger import MessengerHook
from .prompts import PromptSource
from .routing.health import GatewayMonitor
from .routing.router import Router, dialled
from .routing.schedule import OPEN, situation
from .sip.auth import NO_CREDENTIALS, AuthResult, DigestChallenger
from .sip.events import Peer
from .sip.gate import Gate
from .sip.message import Request, Response
from .sip.registrar import Registrar
from .sip.stack import SipStack, StackConfig, make_response
from .sip.timers import TimerConfig
from .sip.transaction import ServerTransaction
from .storage.abuse import AbuseEvents
from .storage.audit import AuditLog
from .storage.cdr import CdrStore, resolve_url
from .storage.history import CallHistory
from .storage.recordings import RecordingIndex
from .tls import hardened
from .transport.limits import StreamLimits
from .transport.server import Listener, SipServer

log = logging.getLogger("b2bua")


def media_columns(media: dict[str, dict[str, float]]) -> dict[str, float]:
    """A call's per-leg media figures as CDR columns (``a_packets_received``, ...)."""
    return {f"{leg}_{name}": st[name] for leg, st in media.items()
            for name in ("codec", "packets_received", "packets_sent", "packets_lost", "jitter_ms") if name in st}


class Application:
    """One B2BUA process."""

    def __init__(self, config: Config, listeners: list[Listener] | None = None):
        self.config = config
        sip = config.process.sip
        self.listeners = listeners or [Listener.parse(x) for x in sip.listen]
        local: dict[str, tuple[str, int]] = {}
        for lst in self.listeners:
            local.setdefault(lst.transport, (sip.advertise or lst.host, lst.port))
        timers = TimerConfig(sip.timers.t1_ms / 1000, sip.timers.t2_ms / 1000, sip.timers.t4_ms / 1000)
        #: the process's one clock: the SIP driver moves it (SipServer.tick), everything else reads it
        self.clock = Clock()
        self.gc_pacer = GcPacer()
        self.stack = SipStack(StackConfig(timers=timers, local=local, force_rport=sip.force_rport,
                                          max_transactions=sip.max_transactions))
        self.gate = self.stack.gate = Gate(gate_config(config))  # scanners, per-source rates, bans
        self.registrar = Registrar()
        devices = {d.username: d.password for d in config.routing.devices}
        self.devices = devices
        self.auth = DigestChallenger(config.routing.realm, devices.get,
                                     algorithms=tuple(config.routing.digest_algorithms))
        self.router = Router(config, self.registrar)
        self.messenger = MessengerHook(config.routing.messenger)
        self.router.on_notice = self.messenger.notify
        mcfg = config.process.media
        self.engine: EngineControl | None = None
        #: abuse detection's processes (started at the first monitored call); needs anchored media
        self.detection = detection_pool(config) if mcfg.enabled else None
        tap = self.detection.tap_channel if self.detection is not None else None
        if mcfg.enabled:
            ecfg = EngineConfig(host=mcfg.address, port_min=mcfg.port_min, port_max=mcfg.port_max,
                                rtp_timeout=mcfg.rtp_timeout_s)
            workers = mcfg.worker_count()
            if workers:
                self.engine = WorkerEngine(ecfg, workers, on_event=self._media_event, tap=tap,
                                           fill=mcfg.worker_fill_calls)
            else:
                self.engine = MediaEngine(ecfg, on_event=self._media_event, tap=tap)
            log.info("media engine: %s", f"{workers} worker processes" if workers else "in this process")
        self.b2bua = B2BUA(self.stack, lambda req, peer: self.router(req, peer, self.clock.now),
                           B2BUAConfig(response_map=dict(config.routing.response_map),
                                       ring_timeout=sip.ring_timeout_s, max_calls=sip.max_calls,
                                       session_timer=SessionTimerConfig(sip.session_timer.enabled,
                                                                        sip.session_timer.session_expires_s,
                                                                        sip.session_timer.min_se_s),
                                       symmetric_rtp=mcfg.symmetric_rtp,
                                       max_duration=sip.max_call_duration_s),
                           engine=self.engine, clock=self.clock)
        self.b2bua.handlers["REGISTER"] = self._register
        self.health = GatewayMonitor(self.stack, self.router.down, lambda: self.config.routing.trunks,
                                     clock=self.clock)
        self.b2bua.on_ping_result = self.health.result
        self._pid_file: Path | None = None
        #: this node in a shared database: the host and its SIP listeners
        node = f"{socket.gethostname()}|{','.join(sorted(f'{x.transport}:{x.host}:{x.port}' for x in self.listeners))}"
        self.cdr = CdrStore(resolve_url(config.process.storage.url, config.path.parent), node=node[:255])
        self.b2bua.on_call_end = self._record
        self.prompts = PromptSource(config.path.parent)
        storage = config.process.storage
        self.recordings = RecordingIndex(self.cdr.engine, (config.path.parent / storage.recordings).resolve(),
                                         fmt=storage.recording_format, convert=convert_recording)
        self.protection = StaffProtection(self.b2bua, departments=self._department, situation=self._situation,
                                          prompts=self.prompts, recordings=self.recordings,
                                          fallback=lambda target: self.router.fallback(target))
        self.abuse_events = AbuseEvents(self.cdr.engine, (config.path.parent / storage.recordings).resolve())
        self.abuse = AbuseProtection(self.b2bua, departments=self._department, prompts=self.prompts,
                                     evidence=self.abuse_events)
        if self.detection is not None:
            self.detection.on_detection = self._detection
            self.detection.on_clip = self._clip
            self.abuse.on_monitor = self._start_detection
            self.abuse.on_unmonitor = self.detection.unwatch
        #: what operators do to calls in progress (``b2bua calls|hangup|drain``, the admin API)
        self.operator = OperatorControl(self.b2bua, prompts=self.prompts, recording=self.protection.is_recording,
                                        show_numbers=config.process.admin.show_numbers)
        self.admin = AdminServer()
        #: who may log in to the admin API, their sessions; what they did
        self.admin_auth = Authenticator(users={u.name: User(u.name, u.password_hash, u.role)
                                               for u in config.process.admin.users})
        self.audit = AuditLog(self.cdr.engine)
        #: the console's call history (CDRs with their recordings and abuse events)
        self.history = CallHistory(self.cdr.engine)
        self.started_at = time.time()
        self._registry = metrics_registry(self)
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        journal = CallJournal(self.b2bua, self)  # first: it never holds a call back
        self.b2bua.features = FeatureChain(journal, self.abuse, self.protection, self.operator)
        self.b2bua.authorize = self._authorize_invite
        self.server: SipServer | None = None
        #: the TLS listeners' context (None: no certificate configured); mutual TLS sets what it asks of clients
        self._tls_server: ssl.SSLContext | None = None
        self.reloads: Counter[str] = Counter()
        #: HEP v3 export of SIP messages (``hep.address``), started with the listeners
        self.hep: HepExporter | None = None
        #: what the last reload did (``POST /api/reload``, ``b2bua reload``)
        self.last_reload: dict[str, object] = {}

    # -- hot reload ---------------------------------------------------------------------
    def reload(self) -> bool:
        """Load the config files again; swap them in atomically if valid (SIGHUP, `b2bua reload`).

        New calls use the new routing; calls in progress keep the route they started with.
        An invalid config is refused with its ``file:line`` problems and the running one stays.
        """
        try:
            new = load_config(self.config.path)
        except ConfigError as exc:
            self.reloads["failed"] += 1
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            self.last_reload = {"ok": False, "problems": exc.problems}
            return False
        except Exception as exc:  # a bug in a check must never take the running process (or its config) down
            self.reloads["failed"] += 1
            log.exception("reload refused: the configuration could not be checked")
            self.last_reload = {"ok": False, "problems": [f"{self.config.path}: internal error: {exc!r}"]}
            return False
        for warning in new.warnings:
            log.warning("config: %s", warning)
        needs = restart_needed(self.config.process, new.process)
        applied = [k for k in changed(self.config.process.model_dump(), new.process.model_dump()) if k not in needs]
        for key in needs:
            log.warning("reload: %s changed in %s: needs restart", key, self.config.path.name)
        live_settings.apply(self, self.config.process, new.process)
        self._apply_routing(new)
        self.config = new
        self.reloads["ok"] += 1
        self.last_reload = {"ok": True, "applied": applied, "needs_restart": needs, "warnings": list(new.warnings)}
        log.info("configuration reloaded: %d routes, %d staff devices", len(new.routing.routes),
                 len(new.routing.devices))
        return True

    def _apply_routing(self, config: Config) -> None:
        self.prompts = self.protection.prompts = PromptSource(config.path.parent)  # files may have changed
        if hasattr(self, "abuse"):
            self.abuse.prompts = self.operator.prompts = self.prompts
        devices = {d.username: d.password for d in config.routing.devices}
        self.devices = devices
        self.auth.lookup = devices.get
        router = Router(config, self.registrar)
        router.inherit(self.router)
        self.router = router
        self.gate.reconfigure(gate_config(config))
        self._ask_client_certs(config)
        self.messenger.configure(config.routing.messenger)
        if hasattr(self, "health"):
            self.health.start()  # pings for gateways the new config added
        self.b2bua.config.response_map = dict(config.routing.response_map)

    # -- staff devices: digest auth and registration (RFC 3261 §22, §10) ----------------
    def _challenge(self, req: Request, status: int, header: str, stale: bool = False) -> Response:
        resp = make_response(req, status, to_tag=self.stack.new_id())
        for value in self.auth.challenge(self.clock.now, stale=stale):
            resp.add(header, value)
        return resp

    def _register(self, req: Request, txn: ServerTransaction, peer: Peer, now: float) -> Response:
        result = self.auth.verify(req, now, header="authorization")
        if not result.ok:
            self._auth_failed(req, result, now)
            return self._challenge(req, 401, "www-authenticate", result.stale)
        aor_user = dialled(req.to.uri)
        if result.username != aor_user:
            return make_response(req, 403, "Forbidden (credentials do not match the AoR)", to_tag=self.stack.new_id())
        return self.registrar.handle_register(req, now, peer)

    def _authorize_invite(self, req: Request, now: float) -> Response | None:
        """INVITEs claiming to come from a staff device must prove it (407)."""
        user = dialled(req.from_.uri)
        if user not in self.devices:
            return None
        result = self.auth.verify(req, now, header="proxy-authorization")
        if result.ok and result.username == user:
            return None
        self._auth_failed(req, result, now)
        return self._challenge(req, 407, "proxy-authenticate", result.stale)

    def _auth_failed(self, req: Request, result: AuthResult, now: float) -> None:
        """A wrong answer to our challenge (not the first request, which has none; not a stale nonce) counts
        against its source: enough of them ban it (:meth:`~b2bua.sip.gate.Gate.auth_failed`)."""
        if result.stale or result.reason == NO_CREDENTIALS:
            return
        source = source_of(req)
        if self.gate.auth_failed(source, now):
            log.warning("%s banned for %g s: repeated failed authentication (last as %r: %s)", source,
                        self.config.process.security.ban_s, result.username, result.reason)

    def _record(self, rec: CallRecord) -> None:
        """Queue the CDR (times become wall-clock seconds) and free the trunk's call slot."""
        if rec.route_obj is not None:
            self.router.release(rec.route_obj)
        self.cdr.add(self._row(rec))

    def live(self, rec: CallRecord) -> None:
        """A call in progress, for the CDR after a crash (:class:`~.call.journal.CallJournal`)."""
        self.cdr.live(self._row(rec))

    def gone(self, call_id: str) -> None:
        self.cdr.gone(call_id)

    def _row(self, rec: CallRecord) -> dict[str, object]:
        """A CDR row: the call's times as wall-clock seconds."""
        offset = time.time() - (self.server.loop.time() if self.server is not None else self.clock.now)
        row = {
            "call_id": rec.call_id, "a_call_id": rec.a_call_id, "b_call_id": rec.b_call_id,
            "from_uri": rec.from_uri[:255], "to_uri": rec.to_uri[:255], "route": rec.route[:64],
            "start": rec.start + offset, "answer": rec.answer + offset if rec.answer is not None else None,
            "end": rec.end + offset, "duration": rec.end - rec.answer if rec.answer is not None else 0.0,
            "status": rec.status, "end_cause": rec.cause, "ended_by": rec.ended_by,
            "department": route.department if (route := rec.route_obj) is not None else None,
            "direction": route.direction if route is not None else None,
        }
        row.update(media_columns(rec.media))
        return row

    # -- staff protection: departments, their situation, recordings ------------------------
    def _department(self, name: str) -> Department | None:
        return self.router.by_name.get(name)  # the router of the config in force

    def _situation(self, dept: Department) -> str:
        """The department's situation now, in Seoul time (``B2BUA_FAKE_NOW`` freezes the clock for labs)."""
        schedule = next((s for s in self.config.routing.schedules if s.name == dept.schedule), None)
        if schedule is None:
            return OPEN
        return situation(schedule, self.config.holidays, wall_clock())

    def _media_event(self, event: MediaEvent) -> None:
        """DTMF, prompts, recordings and RTP timeouts from the media engine reach call control here."""
        match event:
            case RecordingDone(path=path, seconds=seconds, size=size, error=error):
                self.recordings.finished(path, seconds, size, error)
                return
            case FinalStats(session=session, stats=stats):  # worker mode: the exact figures of a call that ended
                self.cdr.amend(session, media_columns(stats))
                return
        if self.server is not None:
            self.server.tick()  # the event happened now: call control reads the clock
        self.b2bua.on_media_event(event)
        if self.server is not None:
            self.server.kick()

    def _start_detection(self, session: str, leg: str, policy: Abuse) -> None:
        """A monitored leg: the detection processes start at the first one (its first seconds queue meanwhile),
        and the segmenter learns the department's shouting settings."""
        if self.detection is not None and self.server is not None:
            self.detection.start(self.server.loop)
            self.detection.watch(session, leg, policy.shout_dbfs, policy.shout_seconds)

    def _clip(self, clip: EvidenceClip) -> None:
        """An utterance's whole evidence clip (2 s after it included), for the events made from it."""
        if self.server is not None:
            self.server.tick()
        self.abuse.on_clip(clip)

    def _detection(self, det: Detection) -> None:
        """A transcribed, classified utterance from a detection worker reaches the abuse policy here."""
        if self.server is not None:
            self.server.tick()
        self.abuse.on_detection(det)
        if self.server is not None:
            self.server.kick()

    # -- running ------------------------------------------------------------------------
    def pump(self) -> None:
        self.b2bua.drain()

    def _tls_contexts(self) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
        tls = self.config.process.sip.tls
        base = self.config.path.parent
        server = None
        client = hardened(ssl.Purpose.SERVER_AUTH)
        if tls.cert and tls.key:
            server = hardened(ssl.Purpose.CLIENT_AUTH)
            server.load_cert_chain(base / tls.cert, base / tls.key)
            client.load_cert_chain(base / tls.cert, base / tls.key)  # shown to carriers that ask (mutual TLS)
        if tls.ca:
            client.load_verify_locations(base / tls.ca)
            if server is not None:
                server.load_verify_locations(base / tls.ca)  # what signs mutual-TLS trunks' certificates
        self._tls_server = server
        self._ask_client_certs(self.config)
        if not tls.verify_peer:
            client.check_hostname = False
            client.verify_mode = ssl.CERT_NONE
        return server, client

    async def start(self) -> None:
        server_ctx, client_ctx = self._tls_contexts()

        def on_overload(flag: bool) -> None:
            self.b2bua.overloaded = self.gate.shedding = flag

        self.server = SipServer(self.stack, self.pump, clock=self.clock, tls_server=server_ctx, tls_client=client_ctx,
                                tls_admit=lambda host, cert: tls_refusal(self.router.source_trunk(host), cert),
                                overload_lag=self.config.process.sip.overload_lag_ms / 1000,
                                on_overload=on_overload, limits=self.config.process.sip.connections.limits())
        hep = self.config.process.hep
        if hep.address:
            self.hep = HepExporter(hep.address, hep.capture_id, hep.password)
            self.server.capture = self._capture
        self.recordings.recover(repair_recording)  # what an unclean stop left, before new calls
        await asyncio.to_thread(self.cdr.recover)
        if self.engine is not None:
            self.engine.start(asyncio.get_running_loop())
            await self.engine.ready()  # worker processes bind their ports before the first call arrives
        self.cdr.start(asyncio.get_running_loop())
        await self.messenger.start()
        await self.server.start(self.listeners)
        self.health.start()
        self.server.kick()
        await self._serve_admin()
        pid_file = (self.config.path.parent / self.config.process.pid_file).resolve()
        try:
            pid_file.parent.mkdir(parents=True, exist_ok=True)
            pid_file.write_text(f"{os.getpid()}\n")
            self._pid_file = pid_file
        except OSError as exc:
            log.warning("cannot write pid file %s: %s", pid_file, exc)
        self._gc_task = asyncio.get_running_loop().create_task(self._collect_garbage())
        self._purge_task = asyncio.get_running_loop().create_task(self._purge())

    def _capture(self, data: bytes, peer: Peer, received: bool) -> None:
        """A SIP message crossing the wire, to the HEP collector (from the peer to us, or from us to it)."""
        if self.hep is None:
            return
        local = self.stack.config.local.get(peer.transport, ("0.0.0.0", 0))
        remote = (peer.host, peer.port)
        self.hep.capture(data, remote if received else local, local if received else remote, peer.transport,
                         time.time())

    async def _serve_admin(self) -> None:
        """/metrics, /healthz, /readyz and the API on the metrics address; the API on the control socket."""
        process = self.config.process
        self._registry = metrics_registry(self)
        await self._serve_admin_tcp(process.metrics.address)
        path = process.admin.socket_path(self.config.path.parent)
        if path is not None:
            try:
                await self.admin.serve_socket(make_app(self, self._registry, lambda: None, authenticate=False), path)
            except OSError as exc:
                log.warning("control socket %s unavailable: %s", path, exc)

    async def _serve_admin_tcp(self, address: str | None) -> None:
        """The admin listener on ``address`` (moved there by a reload; None: off)."""
        admin = self.config.process.admin
        try:
            await self.admin.serve_tcp(make_app(self, self._registry, lambda: self.config.process.admin.bearer(),
                                                authenticate=True), address,
                                       admin.ssl_context(self.config.path.parent))
        except (OSError, ssl.SSLError) as exc:  # the admin listener must never keep calls from being served
            log.warning("admin listener on %s unavailable: %s", address, exc)

    def bans(self) -> list[dict[str, object]]:
        """The front gate's bans, for operators (``until``: Unix time)."""
        now, wall = self.stack.now, time.time()
        return [{"host": b.host, "until": wall + b.until - now, "seconds_left": b.until - now, "reason": b.reason}
                for b in self.gate.bans(now)]

    def lift_ban(self, host: str) -> bool:
        if lifted := self.gate.lift(host):
            log.warning("ban of %s lifted by an operator", host)
        return lifted

    def wall_clock(self) -> datetime:
        """Now, for the schedules (``B2BUA_FAKE_NOW`` in labs)."""
        return wall_clock()

    def move_admin(self, address: str | None) -> None:
        """A reload changed ``metrics.address``: serve there from now on."""
        if self.server is not None:
            self.server.loop.create_task(self._serve_admin_tcp(address))

    # -- live settings (live_settings.Settable) -------------------------------------------
    @property
    def stack_config(self) -> StackConfig:
        return self.stack.config

    @property
    def b2bua_config(self) -> B2BUAConfig:
        return self.b2bua.config

    def set_overload_lag(self, seconds: float) -> None:
        if self.server is not None:
            self.server.overload_lag = seconds

    def _ask_client_certs(self, config: Config) -> None:
        """TLS clients are asked for a certificate while a trunk has mutual TLS (new handshakes: live)."""
        if self._tls_server is not None:
            wanted = any(t.mutual_tls for t in config.routing.trunks)
            self._tls_server.verify_mode = ssl.CERT_OPTIONAL if wanted else ssl.CERT_NONE

    def set_stream_limits(self, limits: StreamLimits) -> None:
        if self.server is not None:
            self.server.connections.limits = limits

    def set_show_numbers(self, show: bool) -> None:
        self.operator.set_show_numbers(show)

    def set_admin_users(self, users: list[AdminUser]) -> None:
        """Users added, removed, given another role or password; sessions of users gone or changed end."""
        new = {u.name: User(u.name, u.password_hash, u.role) for u in users}
        auth = self.admin_auth
        for cookie, session in list(auth.sessions.items()):
            kept = new.get(session.user)
            if kept is None or kept != auth.users.get(session.user):
                del auth.sessions[cookie]
        auth.users = new

    # -- live call control (the admin API, the signals) ----------------------------------
    @property
    def ready(self) -> bool:
        """Taking new calls: listening, neither draining nor overloaded."""
        return self.server is not None and not self.b2bua.draining and not self.b2bua.overloaded

    def act(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on call control now (the clock read first, what it sent flushed after)."""
        if self.server is not None:
            self.server.tick()
        result = fn()
        if self.server is not None:
            self.server.kick()
        return result

    def request_drain(self) -> None:
        """SIGTERM, SIGINT, ``b2bua drain``: the first starts the drain, the next ends it at once."""
        if self._stop.is_set():
            log.warning("second stop request: ending every call now")
            self._hurry.set()
        self._stop.set()

    async def drain(self) -> None:
        """New calls and OPTIONS get 503; calls in progress may finish for ``shutdown.drain_s``, then BYE on
        both legs with a Reason; what still has no answer after ``bye_grace_s`` is forgotten, its CDR written."""
        cfg = self.config.process.shutdown
        loop = asyncio.get_running_loop()
        self.act(lambda: self.operator.drain(cfg.drain_s))
        log.info("draining: %d call(s) in progress, new calls refused (503), up to %.0f s", len(self.b2bua.calls),
                 cfg.drain_s)
        deadline = loop.time() + cfg.drain_s
        while self.b2bua.calls and loop.time() < deadline and not self._hurry.is_set():
            await _wait(self._hurry, min(0.2, deadline - loop.time()))
        if self.b2bua.calls:
            ended = self.act(self.operator.end_all)
            log.info("drain: ending %s call(s) (BYE with Reason)", ended)
        grace = loop.time() + cfg.bye_grace_s
        while self.b2bua.calls and loop.time() < grace:
            await asyncio.sleep(0.05)
        if self.b2bua.calls:
            left = self.act(self.operator.finish_all)
            log.warning("drain: %s call(s) had no answer to their BYE; their CDRs are written", left)

    async def _purge(self, every: float = 6 * 3600.0) -> None:
        """Recordings past their department's ``recording_retention_days`` and abuse events past
        ``policy.abuse.retention_days`` go (rows and files), at start and every few hours, off the event loop."""
        while True:
            departments = self.config.routing.departments
            for what, store, days in (
                    ("recordings", self.recordings, {d.name: d.policy.recording_retention_days for d in departments}),
                    ("abuse events", self.abuse_events, {d.name: d.policy.abuse.retention_days for d in departments})):
                try:
                    purged = await asyncio.to_thread(store.purge_all, days)
                except Exception:  # a database outage: tried again next time
                    log.exception("purging %s failed", what)
                    continue
                if purged:
                    log.info("%s: %d past their retention removed", what, purged)
            await asyncio.sleep(every)

    async def _collect_garbage(self) -> None:
        """The cyclic GC, paced (b2bua/gc_pacer.py): young passes ten times a second, a full one when the
        heap has grown."""
        loop = asyncio.get_running_loop()
        pacer = self.gc_pacer
        pacer.start(loop.time())
        while True:
            await asyncio.sleep(pacer.young_every)
            if pacer.tick(loop.time()) and self.server is not None:
                self.server.excuse(pacer.last_pause)  # a full pass held the loop on purpose: not overload

    async def stop(self) -> None:
        if self._pid_file is not None:
            try:
                if self._pid_file.read_text().strip() == str(os.getpid()):
                    self._pid_file.unlink()
            except OSError:
                pass
        for task in (getattr(self, "_gc_task", None), getattr(self, "_purge_task", None)):
            if task is not None:
                task.cancel()
        if getattr(self, "_gc_task", None) is not None:
            self.gc_pacer.stop()  # the automatic GC again (an application run inside another program)
        await self.admin.close()
        if self.server is not None:
            await self.server.close()
        if self.hep is not None:
            self.hep.close()
        if self.engine is not None:
            await self.engine.settle()  # worker mode: the last calls' exact figures, for their CDRs
            self.engine.close()
            await asyncio.sleep(0.05)  # the writer's last RecordingDone events
        if self.detection is not None:
            await asyncio.to_thread(self.detection.close)
        await asyncio.to_thread(self.abuse_events.close)
        await asyncio.to_thread(self.audit.close)
        await asyncio.to_thread(self.recordings.close)
        await self.messenger.close()
        await self.cdr.close()

    async def run_forever(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.request_drain)
            except (NotImplementedError, RuntimeError):
                pass
        try:
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        except (NotImplementedError, RuntimeError):
            pass
        log.info("b2bua ready")
        await self._stop.wait()
        await self.drain()
        await self.stop()


async def _wait(event: asyncio.Event, timeout: float) -> None:
    """Until ``event`` is set or ``timeout`` passed."""
    try:
        await asyncio.wait_for(event.wait(), max(0.0, timeout))
    except TimeoutError:
        pass
