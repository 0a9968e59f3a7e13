"""Configuration: YAML files validated by pydantic models, errors as ``file:line: problem``.

``config/b2bua.yaml`` describes the process and names the routing file
(``config/routing.yaml``). Both are loaded with PyYAML's composer so every
value keeps its line number; schema errors are mapped back to those lines.
"""

from __future__ import annotations

import difflib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .abuse.lexicon import load_lexicon
from .config_checks import cross_check, locator, warnings
from .config_schema import (
    Abuse,
    AbuseCategory,
    AdminConfig,
    AdminUser,
    CallerId,
    CallerIdOverride,
    ClosedAction,
    Codec,
    Credentials,
    Department,
    DepartmentPolicy,
    DetectionConfig,
    Device,
    DigestAlgorithm,
    Gateway,
    HepConfig,
    IdentityHeader,
    LoggingConfig,
    LongCall,
    MediaConfig,
    Messenger,
    MetricsConfig,
    OptionsPing,
    ProcessConfig,
    RouteConfig,
    RoutingConfig,
    SessionTimerSettings,
    ShutdownConfig,
    SipConfig,
    StorageConfig,
    TimersConfig,
    TlsConfig,
    Trunk,
    UnknownNumber,
)
from .routing.schedule import SEOUL, Holidays, korean_calendar, load_holidays
from .yamlconf import ConfigError, load_yaml


@dataclass(frozen=True)
class Config:
    """The whole loaded configuration."""

    process: ProcessConfig
    routing: RoutingConfig
    path: Path
    holidays: Holidays = field(default_factory=Holidays)
    #: what is allowed but should not go live (``file:line: ...``): printed by check-config, logged by run
    warnings: tuple[str, ...] = ()


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


def load_process(path: str | Path) -> ProcessConfig:
    """``b2bua.yaml`` alone, validated (tools that need only the process settings, not the routing)."""
    path = Path(path)
    data, lines = load_yaml(path)
    process: ProcessConfig = _validate(ProcessConfig, data, path, lines)  # type: ignore[assignment]
    try:
        process.admin.ssl_context(path.parent)  # the admin listener's certificate: found and readable now
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"{locator(path, lines)('admin', 'tls_cert')}: cannot load the admin listener's "
                           f"certificate and key: {exc}"]) from None
    return process


def load_config(path: str | Path) -> Config:
    """Load and validate ``b2bua.yaml`` and the routing file it names.

    Raises :class:`ConfigError` with every problem found in both files.
    """
    path = Path(path)
    problems: list[str] = []
    process: ProcessConfig | None = None
    try:
        process = load_process(path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    routing_path = path.parent / (process.routing_file if process else "routing.yaml")
    routing: RoutingConfig | None = None
    rlines: dict[tuple, int] = {}
    try:
        rdata, rlines = load_yaml(routing_path)
        routing = _validate(RoutingConfig, rdata, routing_path, rlines)  # type: ignore[assignment]
        if routing is not None:
            problems.extend(cross_check(routing, routing_path, rlines))
    except ConfigError as exc:
        problems.extend(exc.problems)
    holidays = Holidays()
    if routing is not None:
        calendar = korean_calendar() if routing.holiday_calendar == "KR" else None
        holidays = Holidays(calendar=calendar)
        if routing.holidays_file:
            try:
                local = load_holidays(routing_path.parent / routing.holidays_file)
                holidays = Holidays(dict(local.items()), local.source, calendar)
            except ConfigError as exc:
                problems.extend(exc.problems)
    if process is not None and routing is not None and process.detection.enabled and \
            any(d.policy.abuse.enabled for d in routing.departments):
        try:  # the word list detection will use: checked now, not at the first abusive call
            load_lexicon(process.detection.lexicon_path(path.parent))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems or process is None or routing is None:
        raise ConfigError(problems)
    found = warnings(process, routing, holidays, routing_path, rlines, datetime.now(SEOUL).date())
    return Config(process, routing, path, holidays, tuple(found))


__all__ = [
    "Config", "ConfigError", "load_config", "load_process", "Abuse", "AbuseCategory", "AdminConfig", "AdminUser",
    "CallerId", "CallerIdOverride", "ClosedAction", "Codec", "Credentials", "Department", "DepartmentPolicy",
    "DetectionConfig", "Device", "DigestAlgorithm", "Gateway", "HepConfig", "IdentityHeader", "LoggingConfig",
    "LongCall", "MediaConfig", "Messenger", "MetricsConfig", "OptionsPing", "ProcessConfig", "RouteConfig",
    "RoutingConfig", "SessionTimerSettings", "ShutdownConfig", "SipConfig", "StorageConfig", "TimersConfig",
    "TlsConfig", "Trunk", "UnknownNumber",
]
