"""The checks that span the routing file (names that must exist, numbers and ranges claimed once, prompts
that must decode) and the warnings an operator should read before going live: every problem a
``file:line: what is wrong`` line, as ``b2bua check-config`` prints it.

Kept apart from :mod:`b2bua.config` (the schema and the loading) so each stays readable; imports the
schema's types for annotations only (the schema module calls these checks).
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from media.prompts_lib import PromptError, PromptLibrary

from .routing.extensions import extensions_overlap, parse_extension_range
from .routing.numbers import to_e164

if TYPE_CHECKING:
    from .config_schema import ProcessConfig, RoutingConfig
    from .routing.schedule import Holidays

#: nationwide numbers (대표번호) that have no area code and need none
NATIONWIDE = ("15", "16", "18")
#: the passwords the shipped example configuration uses: a live system must not keep them
EXAMPLE_PASSWORDS = ("change-me",)

def cross_check(routing: RoutingConfig, path: Path, lines: dict[tuple, int]) -> list[str]:
    """Every problem of the routing file that one key's validation cannot see."""
    out: list[str] = []
    at = locator(path, lines)

    def dangling(kind: str, name: str, known: list[str]) -> str:
        hint = difflib.get_close_matches(name, known, n=1)
        return f"no {kind} named {name!r}" + (f" (did you mean {hint[0]!r}?)" if hint else
                                               f" (known: {', '.join(known) or 'none'})")

    trunks = {t.name: t for t in routing.trunks}
    departments = [d.name for d in routing.departments]
    schedules = [sc.name for sc in routing.schedules]
    for kind, key, attr, names in (
            ("route", "routes", "name", [r.name for r in routing.routes]),
            ("trunk", "trunks", "name", [t.name for t in routing.trunks]),
            ("schedule", "schedules", "name", schedules),
            ("department", "departments", "name", departments),
            ("device", "devices", "username", [d.username for d in routing.devices])):
        for i, name in enumerate(names):
            if names.index(name) != i:
                out.append(f"{at(key, i, attr)}: duplicate {kind} name {name!r} (first at {key}.{names.index(name)})")
    for i, r in enumerate(routing.routes):
        if not r.trunks and not r.targets:
            out.append(f"{at('routes', i)}: a route needs trunks or targets")
        for j, t in enumerate(r.trunks):
            if t not in trunks:
                out.append(f"{at('routes', i, 'trunks', j)}: {dangling('trunk', t, list(trunks))}")
            elif not trunks[t].gateways:
                out.append(f"{at('routes', i, 'trunks', j)}: trunk {t!r} has no gateways to send calls to")
        modes = {trunks[t].srtp for t in r.trunks if t in trunks}
        if len(modes) > 1:  # one offer is built for all of a route's targets
            out.append(f"{at('routes', i, 'trunks')}: the trunks of route {r.name!r} differ in srtp "
                       f"({', '.join(sorted(modes))}): a route's trunks must agree")
    prefixes: dict[str, int] = {}
    for i, r in enumerate(routing.routes):
        if r.prefix in prefixes:
            out.append(f"{at('routes', i, 'prefix')}: prefix {r.prefix!r} is already routed by route "
                       f"{routing.routes[prefixes[r.prefix]].name!r}")
        prefixes.setdefault(r.prefix, i)
    owner: dict[str, tuple[int, str]] = {}
    for i, d in enumerate(routing.departments):
        if d.trunk not in trunks:
            out.append(f"{at('departments', i, 'trunk')}: {dangling('trunk', d.trunk, list(trunks))}")
        elif trunks[d.trunk].kind != "pbx":
            out.append(f"{at('departments', i, 'trunk')}: staff phones sit behind a pbx trunk, "
                       f"{d.trunk!r} is a {trunks[d.trunk].kind}")
        if d.schedule is not None and d.schedule not in schedules:
            out.append(f"{at('departments', i, 'schedule')}: {dangling('schedule', d.schedule, schedules)}")
        for j, number in enumerate(d.numbers):
            e164 = to_e164(number)
            if not e164.startswith("+") and not e164.startswith(NATIONWIDE):
                out.append(f"{at('departments', i, 'numbers', j)}: {number!r} has no area code: a carrier sends "
                           f"it as E.164 (+82...), so write it with its area code (02-{number})")
            if e164 in owner and owner[e164][1] != d.name:
                out.append(f"{at('departments', i, 'numbers', j)}: {number!r} is also a number of department "
                           f"{owner[e164][1]!r}")
            elif e164 in owner and owner[e164][0] != j:
                out.append(f"{at('departments', i, 'numbers', j)}: {number!r} is listed twice in this department "
                           f"(as {d.numbers[owner[e164][0]]!r})")
            owner.setdefault(e164, (j, d.name))
        for situation, action in d.policy.closed.items():
            if action.fallback and action.fallback not in departments:
                try:
                    to_e164(action.fallback)
                except ValueError:
                    out.append(f"{at('departments', i, 'policy', 'closed', situation, 'fallback')}: "
                               f"{dangling('department', action.fallback, departments)} and not a number")
    prompts = PromptLibrary(base=path.parent)
    checked: dict[str, str | None] = {}

    def prompt_problem(name: str) -> str | None:
        if name not in checked:
            try:
                prompts.get(name)  # decoded once here, so a bad file is found before a call needs it
                checked[name] = None
            except PromptError as exc:
                checked[name] = str(exc)
        return checked[name]

    for i, d in enumerate(routing.departments):
        for situation, name in d.policy.ringback.items():
            problem = prompt_problem(name)
            if problem:
                out.append(f"{at('departments', i, 'policy', 'ringback', situation)}: {problem}")
        for keys, name in ((("recording_notice",), d.policy.recording_notice),
                           (("long_call", "announcement"), d.policy.long_call.announcement)):
            if (problem := prompt_problem(name)):
                out.append(f"{at('departments', i, 'policy', *keys)}: {problem}")
        if d.policy.long_call.key == d.policy.recording_key:
            out.append(f"{at('departments', i, 'policy', 'recording_key')}: the same key as long_call.key")
        abuse = d.policy.abuse
        if abuse.enabled:
            for field_name in ("warn_prompt", "end_prompt"):
                if (problem := prompt_problem(getattr(abuse, field_name))):
                    out.append(f"{at('departments', i, 'policy', 'abuse', field_name)}: {problem}")
            if abuse.report_key in (d.policy.recording_key, d.policy.long_call.key):
                out.append(f"{at('departments', i, 'policy', 'abuse', 'report_key')}: "
                           f"{abuse.report_key!r} is already the recording or long-call key")
    if routing.unknown_number.prompt and (problem := prompt_problem(routing.unknown_number.prompt)):
        out.append(f"{at('unknown_number', 'prompt')}: {problem}")
    for i, dev in enumerate(routing.devices):
        if dev.department is not None and dev.department not in departments:
            out.append(f"{at('devices', i, 'department')}: {dangling('department', dev.department, departments)}")
    out.extend(_check_caller_id(routing, at))
    out.extend(_check_addresses(routing, at))
    return out


def locator(path: Path, lines: dict[tuple, int]) -> Callable[..., str]:
    """``at(*key)``: ``file:line: a.b.c`` of the deepest part of ``key`` the file has a line for."""
    def at(*key: object) -> str:
        for n in range(len(key), 0, -1):
            if key[:n] in lines:
                return f"{path}:{lines[key[:n]]}: {'.'.join(str(k) for k in key)}"
        return f"{path}:1: {'.'.join(str(k) for k in key)}"
    return at


def _check_addresses(routing: RoutingConfig, at: Callable[..., str]) -> list[str]:
    """A source address range belongs to one trunk: the same range in two trunks is ambiguous (a range
    inside another one's is fine: the most specific range decides, see the router)."""
    out: list[str] = []
    seen: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, str] = {}
    for i, t in enumerate(routing.trunks):
        for j, a in enumerate(t.addresses):
            net = ipaddress.ip_network(a, strict=False)
            if net in seen and seen[net] != t.name:
                out.append(f"{at('trunks', i, 'addresses', j)}: {a} is also an address range of trunk {seen[net]!r}: "
                           "which trunk a call came from would be a guess")
            seen.setdefault(net, t.name)
    return out


def warnings(process: ProcessConfig, routing: RoutingConfig, holidays: Holidays, path: Path,
             lines: dict[tuple, int], today: date) -> list[str]:
    """What is allowed but should not go live: example passwords, unverified TLS to carriers, a holiday
    calendar that runs out within a year."""
    out: list[str] = []
    at = locator(path, lines)
    for i, dev in enumerate(routing.devices):
        if dev.password.startswith(EXAMPLE_PASSWORDS):
            out.append(f"{at('devices', i, 'password')}: the example password of the shipped configuration: set "
                       "each staff device's own")
    for i, t in enumerate(routing.trunks):
        if t.credentials is not None and t.credentials.password.startswith(EXAMPLE_PASSWORDS):
            out.append(f"{at('trunks', i, 'credentials', 'password')}: the example password: set the carrier's")
        if t.transport == "tls" and not process.sip.tls.verify_peer:
            out.append(f"{at('trunks', i, 'transport')}: TLS to trunk {t.name!r} without verifying its certificate "
                       "(sip.tls.verify_peer: false in b2bua.yaml): anyone on the path can pose as the carrier")
    for year in holidays.uncovered(today):
        out.append(f"{at('holidays_file')}: no public holidays known for {year}: departments would be open on "
                   "them (add the year's days, or use holiday_calendar: KR)")
    return out


def _check_caller_id(routing: RoutingConfig, at: Callable[..., str]) -> list[str]:
    """The PBX number plan claims each extension once; the messenger has its secret."""
    out: list[str] = []
    claimed: list[tuple[tuple[str, str], str, str]] = []  # ((low, high), item, department)
    for i, d in enumerate(routing.departments):
        for j, item in enumerate(d.extensions):
            rng = parse_extension_range(item)
            for other, other_item, owner in claimed:
                if owner != d.name and extensions_overlap(rng, other):
                    out.append(f"{at('departments', i, 'extensions', j)}: {item!r} overlaps {other_item!r} "
                               f"of department {owner!r}")
                    break
            claimed.append((rng, item, d.name))
    m = routing.messenger
    if m.url and not (m.secret or m.secret_env):
        out.append(f"{at('messenger', 'url')}: the messenger hook needs a secret (or secret_env) to sign with")
    return out
