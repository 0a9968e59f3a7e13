"""Each department's situation now, what a citizen calling it hears, and when that changes next: the same
rules staff protection applies to a call (:mod:`b2bua.call.protection`), read from the config in force."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..config import Config, Department
from ..routing.schedule import OPEN, SEOUL, next_change, situation


@dataclass(frozen=True, slots=True)
class Hears:
    """What a caller hears in a situation: ``kind`` ringback | closed | fallback, and its prompt (for
    ringback, after the recording notice ``notice`` when the department records every call)."""

    kind: str
    prompt: str | None
    notice: str | None = None
    status: int | None = None  # closed: the final response after the prompt
    to: str | None = None  # fallback: where the call goes


@dataclass(frozen=True, slots=True)
class DepartmentNow:
    name: str
    display_name: str
    numbers: tuple[str, ...]
    recording: str
    situation: str
    hears: Hears
    next_at: datetime | None  # Seoul time
    next_situation: str | None


def hears(dept: Department, now: str) -> Hears:
    """What a citizen's call meets in situation ``now`` (as :class:`~b2bua.call.protection.StaffProtection`)."""
    policy = dept.policy
    closed = policy.closed.get(now)
    if closed is not None:
        prompt = policy.ringback.get(now)
        if closed.fallback:
            return Hears("fallback", prompt, to=closed.fallback)
        return Hears("closed", prompt, status=closed.release_status)
    notice = policy.recording_notice if policy.recording == "full" else None
    return Hears("ringback", policy.ringback_for(now), notice=notice)


def overview(config: Config, when: datetime) -> list[DepartmentNow]:
    """Every department of ``config`` at ``when`` (timezone-aware)."""
    schedules = {s.name: s for s in config.routing.schedules}
    out = []
    for dept in config.routing.departments:
        schedule = schedules.get(dept.schedule or "")
        now = situation(schedule, config.holidays, when) if schedule is not None else OPEN
        at = next_change(schedule, config.holidays, when) if schedule is not None else None
        then = situation(schedule, config.holidays, at) if schedule is not None and at is not None else None
        out.append(DepartmentNow(dept.name, dept.display_name, tuple(dept.numbers), dept.policy.recording, now,
                                 hears(dept, now), at.astimezone(SEOUL) if at is not None else None, then))
    return out


__all__ = ["DepartmentNow", "Hears", "hears", "overview"]
