"""The front gate (:mod:`b2bua.sip.gate`) from the configuration: the trunks' addresses are the trusted
networks, ``security:`` in b2bua.yaml gives the rates, the scanners and the ban policy; and where a request
really came from (for failed logins counted against their source)."""

from __future__ import annotations

import ipaddress

from .config import Config
from .sip.gate import METHOD_CLASSES, GateConfig, Rate
from .sip.message import Request


def gate_config(config: Config) -> GateConfig:
    sec = config.process.security
    trusted = tuple(ipaddress.ip_network(a, strict=False) for t in config.routing.trunks for a in t.addresses)

    def rates(limit: object) -> dict[str, Rate]:
        return {cls: Rate(getattr(limit, cls), 2 * getattr(limit, cls)) for cls in METHOD_CLASSES}

    return GateConfig(trusted=trusted, untrusted_rates=rates(sec.untrusted_rates),
                      trusted_rates=rates(sec.trusted_rates),
                      scanners=tuple(s.lower() for s in sec.scanner_user_agents),
                      ban_after=sec.ban_after_auth_failures, window_s=sec.auth_failure_window_s, ban_s=sec.ban_s,
                      max_sources=sec.max_tracked_sources, max_bans=sec.max_tracked_sources,
                      max_new_calls_per_s=sec.max_new_calls_per_s)


def source_of(req: Request) -> str:
    """The address a received request came from: its top Via's ``received`` (the stack writes it when the
    packet's source differs from what the Via says, §18.2.1), else the Via's host."""
    via = req.top_via
    return via.params.get("received") or via.host.strip("[]")


__all__ = ["gate_config", "source_of"]
