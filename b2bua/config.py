"""Configuration: YAML files validated by pydantic models, errors as ``file:line: problem``.

``config/b2bua.yaml`` describes the process and names the routing file
(``config/routing.yaml``). Both are loaded with PyYAML's composer so every
value keeps its line number; schema errors are mapped back to those lines.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(Exception):
    """One or more ``file:line: problem`` messages."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(Strict):
    cert: str | None = None
    key: str | None = None
    #: CA bundle used to verify carriers' certificates; verification is on when set.
    ca: str | None = None
    verify_peer: bool = False


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

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: list[str]) -> list[str]:
        from .transport.server import Listener

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


class StorageConfig(Strict):
    #: SQLAlchemy URL; a relative SQLite path is relative to this file's directory
    url: str = "sqlite:///../var/b2bua.sqlite3"


class Credentials(Strict):
    username: str
    password: str
    realm: str | None = None


class Device(Strict):
    """A staff device (softphone, mobile app) that registers with digest auth."""

    username: str
    password: str
    display_name: str | None = None


class RouteConfig(Strict):
    """Calls whose dialled number starts with ``prefix`` go to ``targets`` in order."""

    name: str
    prefix: str = ""
    targets: list[str] = Field(min_length=1)
    credentials: Credentials | None = None

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: list[str]) -> list[str]:
        from .sip.uri import SipUri

        for t in v:
            u = SipUri.parse(t)
            if u.scheme not in ("sip", "sips"):
                raise ValueError(f"target {t!r} is not a sip: or sips: URI")
        return v


class RoutingConfig(Strict):
    realm: str = "b2bua.local"
    #: Digest algorithms offered to staff devices, most preferred first (RFC 8760 §2.4).
    digest_algorithms: list[Literal["SHA-256", "MD5"]] = Field(default_factory=lambda: ["SHA-256", "MD5"], min_length=1)
    routes: list[RouteConfig] = Field(default_factory=lambda: [RouteConfig(name="lab", targets=["sip:127.0.0.1:5080"])])
    devices: list[Device] = Field(default_factory=list)
    #: Status codes mapped before a B-leg final response reaches the A leg.
    response_map: dict[int, int] = Field(default_factory=lambda: {401: 403, 407: 403, 503: 500})


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class MetricsConfig(Strict):
    #: HOST:PORT for Prometheus /metrics; null turns it off
    address: str | None = "127.0.0.1:9090"


class ProcessConfig(Strict):
    sip: SipConfig = SipConfig()
    metrics: MetricsConfig = MetricsConfig()
    #: where `b2bua run` writes its pid for `b2bua reload` (relative to this file's directory)
    pid_file: str = "../var/b2bua.pid"
    media: MediaConfig = MediaConfig()
    storage: StorageConfig = StorageConfig()
    routing_file: str = "routing.yaml"
    logging: LoggingConfig = LoggingConfig()


@dataclass(frozen=True)
class Config:
    """The whole loaded configuration."""

    process: ProcessConfig
    routing: RoutingConfig
    path: Path


# -- YAML with line numbers -----------------------------------------------------------

def _to_python(node: yaml.Node, lines: dict[tuple, int], path: tuple) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k, v in node.value:
            key = yaml.safe_load(yaml.serialize(k)) if not isinstance(k, yaml.ScalarNode) else k.value
            lines[path + (key,)] = k.start_mark.line + 1
            out[key] = _to_python(v, lines, path + (key,))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, lines, path + (i,)) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def load_yaml(path: Path) -> tuple[Any, dict[tuple, int]]:
    """Load one YAML file; returns the data and a ``path -> line`` map."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}:1: file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}:1: cannot read: {exc}"]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([f"{path}:{line}: YAML syntax error: {exc.problem or exc}"]) from None
    lines: dict[tuple, int] = {}
    if node is None:
        return {}, lines
    return _to_python(node, lines, ()), lines


def _problems(exc: ValidationError, path: Path, lines: dict[tuple, int], model: type[BaseModel],
              data: Any) -> list[str]:
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = 1
        for i in range(len(loc), -1, -1):
            if loc[:i] in lines:
                line = lines[loc[:i]]
                break
        where = ".".join(str(p) for p in loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            known = _known_fields(model, loc[:-1], data)
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = f"unknown key {loc[-1]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else
                                                f" (expected one of: {', '.join(known)})")
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
            where = ".".join(str(p) for p in loc[:-1]) or "top level"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg = f"{msg} (got {err['input']!r})"
        out.append(f"{path}:{line}: {where}: {msg}")
    return out


def _known_fields(model: type[BaseModel], loc: tuple, data: Any) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        for c in candidates:
            for a in getattr(c, "__args__", ()):
                if isinstance(a, type) and issubclass(a, BaseModel):
                    nested.append(a)
        if not nested:
            return []
        current = nested[0]
    return list(getattr(current, "model_fields", {}))


def _validate(model: type[BaseModel], data: Any, path: Path, lines: dict[tuple, int]) -> BaseModel:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: expected a mapping at the top level"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, path, lines, model, data)) from None


def load_config(path: str | Path) -> Config:
    """Load and validate ``b2bua.yaml`` and the routing file it names.

    Raises :class:`ConfigError` with every problem found in both files.
    """
    path = Path(path)
    problems: list[str] = []
    process: ProcessConfig | None = None
    try:
        data, lines = load_yaml(path)
        process = _validate(ProcessConfig, data, path, lines)  # type: ignore[assignment]
    except ConfigError as exc:
        problems.extend(exc.problems)
    routing_path = path.parent / (process.routing_file if process else "routing.yaml")
    routing: RoutingConfig | None = None
    try:
        rdata, rlines = load_yaml(routing_path)
        routing = _validate(RoutingConfig, rdata, routing_path, rlines)  # type: ignore[assignment]
        if routing is not None:
            problems.extend(_cross_check(routing, routing_path, rlines))
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems or process is None or routing is None:
        raise ConfigError(problems)
    return Config(process, routing, path)


def _cross_check(routing: RoutingConfig, path: Path, lines: dict[tuple, int]) -> list[str]:
    out = []
    seen: dict[str, int] = {}
    for i, r in enumerate(routing.routes):
        if r.name in seen:
            out.append(f"{path}:{lines.get(('routes', i, 'name'), 1)}: routes.{i}.name: "
                       f"duplicate route name {r.name!r} (first at route {seen[r.name]})")
        seen.setdefault(r.name, i)
    users: set[str] = set()
    for i, d in enumerate(routing.devices):
        if d.username in users:
            out.append(f"{path}:{lines.get(('devices', i, 'username'), 1)}: devices.{i}.username: "
                       f"duplicate device {d.username!r}")
        users.add(d.username)
    return out
