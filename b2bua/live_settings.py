"""Which ``b2bua.yaml`` settings a reload applies to the running process, and which need a restart.

Live (applied by :func:`apply`): the log level; the admin listener's address (moved at once); the SIP
timers, ring timeout, call limit, longest call and session timers (for transactions and calls that start
after the reload); the event-loop lag that counts as overload; the drain settings; what operators see
and the admin token; the front gate's rates, scanners and ban policy; the bounds on transactions and
stream connections (for connections and requests that come after the reload). Everything else (the listeners,
TLS, media, storage, detection, the control socket, file locations) is bound when the process starts:
:func:`restart_needed` names each such key that changed, and ``b2bua reload`` prints them as "needs
restart".
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from .call.session import SessionTimerConfig
from .call.settings import B2BUAConfig
from .config import AdminUser, ProcessConfig
from .sip.stack import StackConfig
from .sip.timers import TimerConfig
from .transport.limits import StreamLimits

#: dotted keys (and everything below them) a reload applies
LIVE = ("logging.level", "metrics.address", "sip.timers", "sip.ring_timeout_s", "sip.max_calls",
        "sip.max_call_duration_s", "sip.session_timer", "sip.overload_lag_ms", "sip.max_transactions",
        "sip.connections", "shutdown", "admin.show_numbers",
        "admin.token", "admin.token_env", "admin.users",
        "security")  # the front gate: reconfigured with the routing at every reload (bans and buckets kept)


def changed(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two dumps of a config (leaves, or a whole list)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += changed(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if old == new else [prefix]


def restart_needed(old: ProcessConfig, new: ProcessConfig) -> list[str]:
    """The changed keys a reload cannot apply."""
    return [key for key in changed(old.model_dump(), new.model_dump())
            if not any(key == live or key.startswith(live + ".") for live in LIVE)]


class Settable(Protocol):
    """What holds the live settings (the application)."""

    @property
    def stack_config(self) -> StackConfig: ...
    @property
    def b2bua_config(self) -> B2BUAConfig: ...
    def set_overload_lag(self, seconds: float) -> None: ...
    def set_stream_limits(self, limits: StreamLimits) -> None: ...
    def set_show_numbers(self, show: bool) -> None: ...
    def move_admin(self, address: str | None) -> None: ...
    def set_admin_users(self, users: list[AdminUser]) -> None: ...


def apply(target: Settable, old: ProcessConfig, new: ProcessConfig) -> None:
    """Apply the live settings of ``new`` (the others stay as the process started with them)."""
    sip = new.sip
    if new.metrics.address != old.metrics.address:
        target.move_admin(new.metrics.address)
    logging.getLogger().setLevel(new.logging.level.upper())
    target.stack_config.timers = TimerConfig(sip.timers.t1_ms / 1000, sip.timers.t2_ms / 1000,
                                             sip.timers.t4_ms / 1000)
    target.stack_config.max_transactions = sip.max_transactions
    target.set_stream_limits(sip.connections.limits())
    cfg = target.b2bua_config
    cfg.ring_timeout = sip.ring_timeout_s
    cfg.max_calls = sip.max_calls
    cfg.max_duration = sip.max_call_duration_s
    cfg.session_timer = SessionTimerConfig(sip.session_timer.enabled, sip.session_timer.session_expires_s,
                                           sip.session_timer.min_se_s)
    target.set_overload_lag(sip.overload_lag_ms / 1000)
    target.set_show_numbers(new.admin.show_numbers)
    target.set_admin_users(new.admin.users)


__all__ = ["LIVE", "apply", "changed", "restart_needed"]
