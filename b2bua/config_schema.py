"""The configuration's schema: the pydantic models of ``b2bua.yaml`` (:class:`ProcessConfig`) and
``routing.yaml`` (:class:`RoutingConfig`), each key's type, default, range and single-key checks.

Loading (line numbers, ``file:line`` problems) is :mod:`b2bua.config`; the checks that span keys are
:mod:`b2bua.config_checks`.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from media.api import WORKER_FILL

from .routing.extensions import parse_extension_range
from .routing.forwarding import NEVER_FORWARDED
from .routing.numbers import to_e164
from .routing.schedule import OPEN, Schedule
from .sip.uri import SipUri
from .tls import hardened
from .transport.limits import StreamLimits
from .transport.listener import Listener
from .yamlconf import Strict

#: A trunk's audio codecs.
Codec = Literal["PCMU", "PCMA"]
#: Identity headers written towards a carrier: RFC 3325 PAI / PPI, or Remote-Party-ID.
IdentityHeader = Literal["pai", "ppi", "rpid"]
#: Digest algorithms offered to staff devices (RFC 8760).
DigestAlgorithm = Literal["SHA-256", "MD5"]


# Typed default factories (a lambda's list literal would be inferred as list[str], not of the Literal).
def _default_codecs() -> list[Codec]:
    return ["PCMA", "PCMU"]


def _default_identity_headers() -> list[IdentityHeader]:
    return ["pai"]


def _default_digest_algorithms() -> list[DigestAlgorithm]:
    return ["SHA-256", "MD5"]


class TlsConfig(Strict):
    cert: str | None = None
    key: str | None = None
    #: CA bundle used to verify carriers' certificates (none: the system's bundle)
    ca: str | None = None
    #: check a TLS carrier's certificate and name (off only for labs: `check-config` warns)
    verify_peer: bool = True


class ConnectionsConfig(Strict):
    """Bounds on TCP/TLS connections and DNS lookups (b2bua/transport/limits.py); each hit is counted in
    ``b2bua_limit_hits_total``."""

    #: inbound connections at once, from everyone together
    max_total: int = Field(4096, ge=1)
    #: inbound connections at once from one address
    max_per_source: int = Field(64, ge=1)
    #: no bytes either way for this long: closed (RFC 5626 clients ping every 840 s at most)
    idle_s: float = Field(900.0, gt=0)
    #: a message (and a new connection's first one, and a TLS handshake) must be whole within this long
    message_s: float = Field(10.0, gt=0)
    #: KiB queued to a peer that does not read, beyond which its connection is dropped
    max_write_buffer_kib: int = Field(1024, ge=16)
    #: host names looked up at once
    max_pending_dns: int = Field(64, ge=1)

    def limits(self) -> StreamLimits:
        return StreamLimits(max_total=self.max_total, max_per_source=self.max_per_source, idle_s=self.idle_s,
                            message_s=self.message_s, max_write_buffer=self.max_write_buffer_kib * 1024,
                            max_pending_dns=self.max_pending_dns)


class TimersConfig(Strict):
    """RFC 3261 Table 4 base timers, in milliseconds."""

    t1_ms: int = Field(500, ge=1, le=60_000)
    t2_ms: int = Field(4000, ge=1, le=600_000)
    t4_ms: int = Field(5000, ge=0, le=600_000)


class SessionTimerSettings(Strict):
    """RFC 4028 per leg: asked for on the outbound leg, granted on the inbound leg."""

    enabled: bool = True
    session_expires_s: int = Field(1800, ge=1)
    #: below this a request gets 422 with Min-SE (RFC 4028 says 90; lower only for labs)
    min_se_s: int = Field(90, ge=1)


class SipConfig(Strict):
    listen: list[str] = Field(default_factory=lambda: ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
    #: Address written in Via and Contact when it differs from the listen address (behind NAT).
    advertise: str | None = None
    tls: TlsConfig = TlsConfig()
    timers: TimersConfig = TimersConfig()
    force_rport: bool = True
    ring_timeout_s: float = Field(180.0, gt=0)
    #: end any answered call after this long (0 = no limit)
    max_call_duration_s: float = Field(0.0, ge=0)
    session_timer: SessionTimerSettings = SessionTimerSettings()
    overload_lag_ms: int = Field(250, ge=10)
    max_calls: int = Field(10_000, ge=1)
    #: SIP transactions at once; a new request beyond gets a stateless 503 with Retry-After
    max_transactions: int = Field(100_000, ge=100)
    connections: ConnectionsConfig = ConnectionsConfig()

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: list[str]) -> list[str]:
        for item in v:
            Listener.parse(item)
        return v


class MediaConfig(Strict):
    """The media plane: where RTP is anchored."""

    #: anchor RTP for every call (off: SDP passes through untouched, signalling only)
    enabled: bool = True
    #: address our SDP offers and answers carry and the RTP sockets bind to
    address: str = "127.0.0.1"
    port_min: int = Field(20000, ge=1024, le=65534)
    port_max: int = Field(30000, ge=1026, le=65535)
    #: no RTP from an endpoint for this long ends the call (BYE with a Reason header)
    rtp_timeout_s: float = Field(30.0, gt=0)
    #: latch to where RTP really comes from (symmetric RTP for endpoints behind NAT)
    symmetric_rtp: bool = True
    #: 0: the engine runs in the B2BUA process; N: N worker processes; None (the default): one per core when
    #: there are two or more, else 0 (scripts/bench/media.py: at 500 calls on two cores, two workers keep the
    #: p99 delay near 2 ms where one process reaches 16-100 ms)
    workers: int | None = Field(None, ge=0, le=64)
    #: with workers: the calls one worker takes before the next gets new ones (then the least busy); 0
    #: spreads every call (scripts/bench/media.py: 100 calls cost two workers 21-26 % of a core, one 15-17 %)
    worker_fill_calls: int = Field(WORKER_FILL, ge=0)

    def worker_count(self) -> int:
        """The media worker processes to start: ``workers``, or as many as there are cores (0 on one core)."""
        if self.workers is not None:
            return self.workers
        cores = len(os.sched_getaffinity(0))
        return min(cores, 64) if cores > 1 else 0

    @model_validator(mode="after")
    def _ports(self) -> MediaConfig:
        if self.port_max - self.port_min < 3:
            raise ValueError(f"port_min {self.port_min} .. port_max {self.port_max} holds no RTP/RTCP port pair: "
                             "port_max must be at least port_min + 3")
        return self


class StorageConfig(Strict):
    #: SQLAlchemy URL; a relative SQLite path is relative to this file's directory
    url: str = "sqlite:///../var/b2bua.sqlite3"
    #: call recordings (stereo WAV, YYYY/MM/DD/<call>-<n>.wav), relative to this file's directory
    recordings: str = "../var/recordings"
    #: after the call, convert each recording with PyAV in a worker process (off: keep the WAV)
    recording_format: Literal["wav", "opus", "mp3"] = "wav"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        """A URL SQLAlchemy reads, of a database whose driver is installed (found now, not at the first CDR)."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            url = make_url(v)
            dialect = url.get_dialect()
        except NoSuchModuleError:  # (an ArgumentError too)
            raise ValueError(f"no database driver for {v.split(':', 1)[0]!r}") from None
        except (ArgumentError, ValueError) as exc:
            raise ValueError(f"not a database URL ({exc}); e.g. sqlite:///../var/b2bua.sqlite3 or "
                             "postgresql+psycopg://user@host/b2bua") from None
        try:
            dialect.import_dbapi()
        except ImportError as exc:
            raise ValueError(f"the driver of {url.drivername!r} is not installed ({exc.name or exc}): "
                             "install it (pip install 'b2bua[postgres]' for PostgreSQL)") from None
        if url.get_backend_name() == "sqlite" and not url.database:
            raise ValueError("an SQLite URL needs a file: sqlite:///relative/path or sqlite:////absolute/path")
        return v


class Credentials(Strict):
    username: str
    password: str
    realm: str | None = None


class Device(Strict):
    """A staff device (softphone, mobile app) that registers with digest auth."""

    username: str
    password: str
    display_name: str | None = None
    #: the department this device's calls present (caller ID, policies)
    department: str | None = None
    #: overrides of the department's caller ID for this device (only the keys given)
    caller_id: CallerIdOverride | None = None


class Gateway(Strict):
    uri: str
    #: share of calls for weighted routes
    weight: int = Field(1, ge=0)

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        if SipUri.parse(v).scheme not in ("sip", "sips"):
            raise ValueError(f"gateway {v!r} is not a sip: or sips: URI")
        return v


class OptionsPing(Strict):
    """Mark a gateway down after ``threshold`` unanswered OPTIONS, up again on the next answer."""

    interval_s: float = Field(30.0, gt=0)
    threshold: int = Field(3, ge=1)


class Trunk(Strict):
    """A carrier trunk, the city PBX, or the lab: who may send us calls and where calls to it go."""

    name: str
    kind: Literal["carrier", "pbx"]
    #: source addresses (CIDR) allowed to send requests; anything else gets 403
    addresses: list[str] = Field(min_length=1)
    gateways: list[Gateway] = Field(default_factory=list)
    transport: Literal["udp", "tcp", "tls"] = "udp"
    credentials: Credentials | None = None
    #: how this trunk writes numbers: E.164 (+8221331234) or national (0221331234)
    number_format: Literal["e164", "national"] = "national"
    codecs: list[Codec] = Field(default_factory=_default_codecs)
    max_calls: int = Field(1000, ge=1)
    max_cps: float = Field(50.0, gt=0)
    symmetric_rtp: bool = True
    options_ping: OptionsPing | None = None
    #: send RFC 9796 Call-Info (branding) to this trunk
    call_info: bool = True
    #: headers forwarded to this trunk besides our own (an allow-list; none by default)
    forward_headers: list[str] = Field(default_factory=list)
    #: identity headers written on calls to this carrier (RFC 3325 PAI/PPI, or Remote-Party-ID)
    identity_headers: list[IdentityHeader] = Field(default_factory=_default_identity_headers)
    #: believe this trunk's addresses only over TLS with a client certificate signed by ``sip.tls.ca``
    #: (requests from them over UDP/TCP get 403; a TLS connection without such a certificate is closed)
    mutual_tls: bool = False
    #: with mutual_tls: the names (subjectAltName DNS/IP, else CN) its certificate may carry (empty: any)
    tls_peer_names: list[str] = Field(default_factory=list)
    #: SDES-SRTP (RFC 4568) on this trunk's leg: "off" refuses RTP/SAVP offers (488); "accept" takes
    #: RTP/SAVP or RTP/AVP offers from it and offers it RTP/AVP; "require" offers it RTP/SAVP only and refuses
    #: its RTP/AVP offers
    srtp: Literal["off", "accept", "require"] = "off"
    #: SDES keys travel in the SDP: by default only over TLS (RFC 4568 §8.3); true also over UDP/TCP, where
    #: anyone on the path can read them (a lab, or a carrier's private network)
    sdes_over_cleartext: bool = False

    @model_validator(mode="after")
    def _sdes_keys_protected(self) -> Trunk:
        if self.srtp == "require" and self.transport != "tls" and not self.sdes_over_cleartext:
            raise ValueError(f"srtp: require sends SDES keys to trunk {self.name!r} in its SDP, and its transport is "
                             f"{self.transport}: use transport: tls, or set sdes_over_cleartext: true if the keys may "
                             "be read on the way")
        return self

    @field_validator("forward_headers")
    @classmethod
    def _header_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9!%*_+`'~.-]+", name):
                raise ValueError(f"{name!r} is not a header name")
            if name.lower() in NEVER_FORWARDED:
                raise ValueError(f"{name!r} is written per leg or is an identity: it is never forwarded")
        return [name.lower() for name in v]

    @field_validator("addresses")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for a in v:
            ipaddress.ip_network(a, strict=False)
        return v


class RouteConfig(Strict):
    """Outbound: calls whose dialled number (national form) starts with ``prefix`` go to ``trunks``
    (or directly to ``targets``), ordered or weighted, failing over on ``failover_codes``."""

    name: str
    prefix: str = ""
    trunks: list[str] = Field(default_factory=list)
    targets: list[str] = Field(default_factory=list)
    strategy: Literal["ordered", "weighted"] = "ordered"
    failover_codes: list[int] = Field(default_factory=lambda: [408, 480, 500, 502, 503, 504])
    #: give up on a gateway that has not answered (no final response) after this long
    no_answer_timeout_s: float | None = None
    credentials: Credentials | None = None

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        for t in v:
            u = SipUri.parse(t)
            if u.scheme not in ("sip", "sips"):
                raise ValueError(f"target {t!r} is not a sip: or sips: URI")
        return v


class LongCall(Strict):
    """The long-call key: after ``limit_min`` the staff key ends the call with an announcement."""

    limit_min: float = Field(20.0, gt=0)
    key: str = Field("*9", pattern=r"^[0-9*#A-D]{1,4}$")
    #: end any call after this long regardless (with the same announcement)
    hard_max_min: float | None = Field(None, gt=0)
    #: played to both parties before the BYE
    announcement: str = "long_call_end"


class CallerId(Strict):
    """What citizens see when staff call out (RFC 3325 PAI, RFC 9796 Call-Info)."""

    public_number: str | None = None
    display_name: str | None = None
    privacy: Literal["none", "id", "header", "user"] = "none"
    logo_url: str | None = None
    jcard_url: str | None = None
    call_reason: str | None = None

    @field_validator("public_number")
    @classmethod
    def _public_number(cls, v: str | None) -> str | None:
        if v is not None:
            to_e164(v)
        return v

    @field_validator("logo_url", "jcard_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith(("https://", "http://")) or any(c in v for c in ' <>"')):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


class CallerIdOverride(CallerId):
    """A staff device's own caller ID: only the keys given replace the department's."""

    privacy: Literal["none", "id", "header", "user"] | None = None  # type: ignore[assignment]


Device.model_rebuild()


class Messenger(Strict):
    """The messenger notification hook: an HTTP POST per outbound call, for phones that cannot
    show branding (a messaging gateway notifies the citizen). Off when ``url`` is not set."""

    url: str | None = None
    #: HMAC-SHA256 key for the signature header (or the name of an environment variable holding it)
    secret: str | None = None
    secret_env: str | None = None
    signature_header: str = "X-Signature"
    timeout_s: float = Field(2.0, gt=0)
    #: attempts after the first one; waits backoff_s, 2*backoff_s, ... up to backoff_max_s
    retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    #: notifications waiting to be sent; beyond this new ones are dropped (and counted)
    queue_size: int = Field(1000, ge=1)
    #: the purpose text sent when the department's caller ID has no call_reason
    purpose: str = "서울시 행정 안내 전화"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("https://", "http://")):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v


AbuseCategory = Literal["profanity", "insult", "threat", "sexual_harassment"]


class Abuse(Strict):
    """Abuse detection on the citizen's voice (b2bua/detection/policy.py)."""

    enabled: bool = False
    warn_prompt: str = "abuse_warning"
    end_prompt: str = "abuse_termination"
    #: end the call at this many detections
    end_after: int = Field(2, ge=1)
    #: categories that end the call at their first detection
    end_at_once: list[AbuseCategory] = Field(default_factory=lambda: list[AbuseCategory](["threat"]))
    #: the score (0..1, text and shouting cue combined) from which an utterance counts as abuse
    threshold: float = Field(0.5, gt=0, le=1)
    #: a detection this soon after the last counted one is kept as evidence but not counted again
    cooldown_s: float = Field(8.0, ge=0)
    #: the staff key that reports abuse by hand: an event with the last utterances, and the warning
    report_key: str = Field("*7", pattern=r"^[0-9*#A-D]{1,4}$")
    #: shouting: the caller's smoothed level above the own baseline, never below this (dBFS), for
    #: ``shout_seconds``
    shout_dbfs: float = -8.0
    shout_seconds: float = Field(2.0, gt=0)
    #: days an event's row and audio are kept
    retention_days: int = Field(365, ge=1)


class ClosedAction(Strict):
    """What happens to a call in a closed situation after its prompt: release or go elsewhere."""

    release_status: int = Field(480, ge=400, le=699)
    fallback: str | None = None  # a department name or a number


class DepartmentPolicy(Strict):
    recording: Literal["full", "on_demand", "off"] = "on_demand"
    #: staff key that starts and stops recording (``on_demand``)
    recording_key: str = Field("*1", pattern=r"^[0-9*#A-D]{1,4}$")
    #: played to the caller before the staff phone is alerted (``full``)
    recording_notice: str = "recording_notice"
    #: days a recording (file and index row) is kept; null: until an operator removes it
    recording_retention_days: int | None = Field(None, ge=1)
    #: situation (default, lunch, after_hours, holiday, moved, construction, ...) -> prompt name
    ringback: dict[str, str] = Field(default_factory=lambda: {"default": "city_notice"})
    #: situations in which the call is not put through, and what happens instead
    closed: dict[str, ClosedAction] = Field(default_factory=lambda: {"after_hours": ClosedAction(),
                                                                     "holiday": ClosedAction()})
    long_call: LongCall = LongCall()
    caller_id: CallerId = CallerId()
    abuse: Abuse = Abuse()

    def ringback_for(self, situation: str) -> str | None:
        """The prompt a caller hears while the staff phone rings in ``situation`` (``default`` when open or
        when the situation has none of its own)."""
        return self.ringback.get("default" if situation == OPEN else situation) or self.ringback.get("default")


class Department(Strict):
    name: str
    display_name: str
    #: public numbers (DIDs) citizens dial, any spelling (02-2133-2200, +8221332200)
    numbers: list[str] = Field(min_length=1)
    #: where the staff phones are: a PBX trunk and the extension (hunt group) on it
    trunk: str
    extension: str
    #: the PBX number plan: staff extensions whose outbound calls present this department,
    #: as exact numbers, prefixes ending in ``*`` (``22*``) or ranges (``2200-2299``)
    extensions: list[str] = Field(default_factory=list)
    schedule: str | None = None
    policy: DepartmentPolicy = DepartmentPolicy()

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_extension_range(item)
        return v

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        for n in v:
            to_e164(n)
        return v


class UnknownNumber(Strict):
    status: int = Field(404, ge=400, le=699)
    prompt: str | None = None


class RoutingConfig(Strict):
    realm: str = "b2bua.local"
    #: Digest algorithms offered to staff devices, most preferred first (RFC 8760 §2.4).
    digest_algorithms: list[DigestAlgorithm] = Field(default_factory=_default_digest_algorithms, min_length=1)
    #: the public holidays schedules follow: the ``holidays`` package's Korean calendar (every year, with
    #: substitute and lunar days), or null for ``holidays_file`` alone
    holiday_calendar: Literal["KR"] | None = "KR"
    #: the operator's own days (temporary holidays, local days off), relative to this file
    holidays_file: str | None = None
    trunks: list[Trunk] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=lambda: [RouteConfig(name="lab", targets=["sip:127.0.0.1:5080"])])
    schedules: list[Schedule] = Field(default_factory=list)
    departments: list[Department] = Field(default_factory=list)
    unknown_number: UnknownNumber = UnknownNumber()
    devices: list[Device] = Field(default_factory=list)
    #: Status codes mapped before a B-leg final response reaches the A leg.
    response_map: dict[int, int] = Field(default_factory=lambda: {401: 403, 407: 403, 503: 500})
    messenger: Messenger = Messenger()


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class MetricsConfig(Strict):
    #: HOST:PORT of the admin listener (/metrics, /healthz, /readyz, /api); null turns it off
    address: str | None = "127.0.0.1:9090"

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{v!r} is not HOST:PORT (e.g. 127.0.0.1:9090, [::1]:9090)")
        return v


class AdminUser(Strict):
    """A person who logs in to the admin API (the console): name, scrypt hash, role."""

    name: str = Field(min_length=1, max_length=128)
    #: from ``b2bua admin hash-password`` (never the password itself)
    password_hash: str
    role: Literal["viewer", "operator", "auditor"]

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        from .admin_auth import parse_hash

        parse_hash(v)
        return v


class AdminConfig(Strict):
    """Live call control: ``b2bua calls|hangup|drain`` through a local socket, and the same JSON API on the
    metrics listener (``/api/...``, a bearer token)."""

    #: the control socket (mode 0600: only the user running b2bua, and root, may use it); null: none
    socket: str | None = "../var/b2bua.sock"
    #: the bearer token of ``/api`` on the metrics listener; null: the environment variable ``token_env``;
    #: neither set: ``/api`` answers 403 there (the socket still works)
    token: str | None = None
    token_env: str = "B2BUA_ADMIN_TOKEN"
    #: operators see citizens' numbers in full (otherwise all but the last four digits are masked)
    show_numbers: bool = False
    #: who may log in (the console, POST /api/login): the bearer token above acts as an operator
    users: list[AdminUser] = Field(default_factory=list)
    #: HTTPS on the admin listener (PEM files, relative to this file): the console's cookie is then Secure.
    #: Both or neither; TLS 1.2 at least, with the SIP listeners' cipher suites
    tls_cert: str | None = None
    tls_key: str | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> AdminConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together (HTTPS on the admin listener needs both)")
        return self

    def ssl_context(self, base: Path) -> ssl.SSLContext | None:
        """The admin listener's TLS context (None: plain HTTP); raises OSError/ssl.SSLError on bad files."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        ctx = hardened(ssl.Purpose.CLIENT_AUTH)  # what the SIP listeners have
        ctx.load_cert_chain(base / self.tls_cert, base / self.tls_key)
        return ctx

    def socket_path(self, base: Path) -> Path | None:
        return (base / self.socket).resolve() if self.socket else None

    def bearer(self) -> str | None:
        return self.token or os.environ.get(self.token_env) or None


class ShutdownConfig(Strict):
    """SIGTERM, SIGINT and ``b2bua drain``: new calls get 503, calls in progress may finish for ``drain_s``,
    then both legs get BYE with a Reason; a second signal ends the drain at once."""

    drain_s: float = Field(30.0, ge=0, le=86400)
    #: how long BYEs are given for their answers before the calls are forgotten (their CDRs written)
    bye_grace_s: float = Field(4.0, ge=0, le=64)


class DetectionConfig(Strict):
    """Abuse detection's processes (b2bua/detection/workers.py), started at the first call of a department
    whose ``policy.abuse`` is on; paths are relative to this file's directory."""

    enabled: bool = True
    #: recognizer processes (each loads the speech model: ~350 MB); null: half the machine's cores, at least
    #: one (the media engine, its workers and the event loop keep the rest)
    workers: int | None = Field(None, ge=1, le=16)
    #: CPU threads each recognizer decodes with
    threads: int = Field(1, ge=1, le=16)
    engine: Literal["embedded", "external"] = "embedded"
    #: an OpenAI-compatible ``/v1/audio/transcriptions`` server (``engine: external``; embedded on failure)
    external_url: str | None = None
    external_timeout_s: float = Field(10.0, gt=0)
    #: Whisper base is assembled here from the installed packages at the first use (SHA-256 checked)
    model_dir: str = "../var/whisper-base"
    lexicon: str = "abuse_lexicon.yaml"
    #: trained text models, by version
    model_cache: str = "../var/abuse-models"
    #: 100 ms batches of tapped audio waiting for the segmenter before new ones are dropped
    tap_batches: int = Field(50, ge=2)
    #: utterances waiting for a recognizer before new ones are dropped
    jobs_queue: int = Field(32, ge=1)

    def recognizers(self) -> int:
        """How many recognizer processes run: ``workers``, or half the cores when it is null."""
        return self.workers if self.workers is not None else max(1, (os.cpu_count() or 1) // 2)

    def lexicon_path(self, base: Path) -> Path:
        """The word list, for the config in folder ``base`` (as written: not resolved)."""
        return base / self.lexicon

    def model_cache_path(self, base: Path) -> Path:
        return base / self.model_cache

    def model_dir_path(self, base: Path) -> Path:
        return base / self.model_dir


class HepConfig(Strict):
    """HEP v3 export of every SIP message to a Homer collector (b2bua/hep.py); off without an address."""

    #: HOST:PORT of the collector (UDP), e.g. 127.0.0.1:9060
    address: str | None = None
    capture_id: int = Field(2001, ge=0, le=2**32 - 1)
    password: str | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(f"{v!r} is not IP:PORT (the collector's address, e.g. 127.0.0.1:9060)") from None
        if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{v!r} is not IP:PORT (the collector's address, e.g. 127.0.0.1:9060)")
        return v


class RateLimit(Strict):
    """Requests a second per source address, by method (other: every other out-of-dialog method)."""

    INVITE: float = Field(gt=0)
    REGISTER: float = Field(gt=0)
    OPTIONS: float = Field(gt=0)
    other: float = Field(gt=0)


class SecurityConfig(Strict):
    """The front gate (b2bua/sip/gate.py): what new out-of-dialog requests pass before any state is made.
    Trusted: the trunks' addresses (routing.yaml); everyone else (staff apps, the internet) is an outsider."""

    #: outsiders whose User-Agent contains one of these (any case) are dropped without an answer
    scanner_user_agents: list[str] = Field(default_factory=lambda: list(_scanners()))
    #: outsiders' rates (over them: dropped); a burst of twice the rate is allowed
    untrusted_rates: RateLimit = RateLimit(INVITE=5, REGISTER=5, OPTIONS=5, other=10)
    #: the trunks' rates (over them: a stateless 503 with Retry-After)
    trusted_rates: RateLimit = RateLimit(INVITE=1000, REGISTER=500, OPTIONS=500, other=2000)
    #: an outsider answering digest challenges wrongly this many times within the window is banned
    ban_after_auth_failures: int = Field(10, ge=1)
    auth_failure_window_s: float = Field(60.0, gt=0)
    #: how long a ban lasts (0: never ban); `b2bua bans` lists them, `b2bua bans --lift ADDR` lifts one
    ban_s: float = Field(600.0, ge=0)
    #: addresses tracked at once (least recently seen forgotten first)
    max_tracked_sources: int = Field(50_000, ge=100)
    #: new calls a second from everyone together; beyond: a stateless 503 with Retry-After, so that the calls
    #: let in complete (about 90 % of what scripts/bench/cps.py sustains on the machine); null: no limit
    max_new_calls_per_s: float | None = Field(400.0, gt=0)


def _scanners() -> tuple[str, ...]:
    from .sip.gate import SCANNERS

    return SCANNERS


class ProcessConfig(Strict):
    sip: SipConfig = SipConfig()
    metrics: MetricsConfig = MetricsConfig()
    #: where `b2bua run` writes its pid for `b2bua reload` (relative to this file's directory)
    pid_file: str = "../var/b2bua.pid"
    media: MediaConfig = MediaConfig()
    storage: StorageConfig = StorageConfig()
    detection: DetectionConfig = DetectionConfig()
    admin: AdminConfig = AdminConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    hep: HepConfig = HepConfig()
    security: SecurityConfig = SecurityConfig()
    routing_file: str = "routing.yaml"
    logging: LoggingConfig = LoggingConfig()


__all__ = [
    "Abuse", "AbuseCategory", "AdminConfig", "AdminUser", "CallerId", "CallerIdOverride", "ClosedAction", "Codec",
    "Credentials", "Department", "DepartmentPolicy", "DetectionConfig", "Device", "DigestAlgorithm",
    "Gateway", "HepConfig", "IdentityHeader", "LoggingConfig", "LongCall", "MediaConfig", "Messenger",
    "MetricsConfig", "OptionsPing", "ProcessConfig", "RateLimit", "RouteConfig", "RoutingConfig", "SecurityConfig",
    "SessionTimerSettings",
    "ShutdownConfig", "SipConfig", "StorageConfig", "TimersConfig", "TlsConfig", "Trunk", "UnknownNumber",
]
