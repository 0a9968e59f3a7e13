"""The front gate (:mod:`b2bua.sip.gate`) from the configuration: the trunks' addresses are the trusted
networks, ``security:`` in b2bua.yaml gives the rates, the scanners and the ban policy; and where a request
really came from (for failed logins counted against their source)."""

from __future__ import annotations

import ipaddress
from typing import Any

from .config import Config, Trunk
from .sip.gate import METHOD_CLASSES, GateConfig, Rate
from .sip.message import Request


def gate_config(config: Config) -> GateConfig:
    sec = config.process.security
    trusted = tuple(ipaddress.ip_network(a, strict=False) for t in config.routing.trunks for a in t.addresses)
    tls_only = tuple(ipaddress.ip_network(a, strict=False) for t in config.routing.trunks if t.mutual_tls
                     for a in t.addresses)

    def rates(limit: object) -> dict[str, Rate]:
        return {cls: Rate(getattr(limit, cls), 2 * getattr(limit, cls)) for cls in METHOD_CLASSES}

    return GateConfig(trusted=trusted, tls_only=tls_only, untrusted_rates=rates(sec.untrusted_rates),
                      trusted_rates=rates(sec.trusted_rates),
                      scanners=tuple(s.lower() for s in sec.scanner_user_agents),
                      ban_after=sec.ban_after_auth_failures, window_s=sec.auth_failure_window_s, ban_s=sec.ban_s,
                      max_sources=sec.max_tracked_sources, max_bans=sec.max_tracked_sources,
                      max_new_calls_per_s=sec.max_new_calls_per_s)


def tls_refusal(trunk: Trunk | None, cert: dict[str, Any] | None) -> str | None:
    """Whether an inbound TLS connection from a trunk's address may stay (None) or why not: a trunk with
    ``mutual_tls`` must show a certificate the CA (``sip.tls.ca``) signed, naming (subjectAltName DNS or IP,
    else the subject's CN) one of ``tls_peer_names`` when that list is given. Other addresses pass: their
    requests face the gate and digest authentication as on any transport."""
    if trunk is None or not trunk.mutual_tls:
        return None
    if not cert:
        return f"trunk {trunk.name} needs a client certificate"
    if trunk.tls_peer_names:
        names = {value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")}
        if not names:
            names = {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
        if not names & set(trunk.tls_peer_names):
            return f"trunk {trunk.name}: the certificate names {sorted(names)}, not one of its tls_peer_names"
    return None


def source_of(req: Request) -> str:
    """The address a received request came from: its top Via's ``received`` (the stack writes it when the
    packet's source differs from what the Via says, §18.2.1), else the Via's host."""
    via = req.top_via
    return via.params.get("received") or via.host.strip("[]")


__all__ = ["gate_config", "source_of", "tls_refusal"]
