"""The console's JSON and media routes, beside the admin API (:mod:`b2bua.admin`), behind the same guard:

* ``GET /api/calls/stream`` -> Server-Sent Events: ``data: {"calls": [...], "draining": bool}`` every second
  (one snapshot shared by every open console, so ten supervisors cost what one does);
* ``GET /api/cdrs[?since&until&department&number&cause&limit]`` -> ``{"cdrs": [...]}`` newest first (``view``);
  ``GET /api/cdrs/{id}`` -> the CDR with its ``recordings`` and ``abuse_events``;
* ``GET /api/recordings/{id}/waveform.svg`` -> the picture of both channels (``listen``);
* ``GET /api/abuse/events/{id}/clip`` -> the evidence clip (``listen``; an audit row ``play_clip``);
* ``GET /api/departments`` -> each department's situation now, what a caller hears, the next change;
* ``GET /api/system`` -> readiness, the last reload, and the figures the system page charts.

Citizens' numbers are masked as on ``b2bua calls`` (``admin.show_numbers``); searching by a whole number
still finds its calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

from aiohttp import web
from prometheus_client import CollectorRegistry

from ..admin_http import Controlled, audit, error, recording_file, refused, starts_playback
from ..call.operator import CODEC_NAMES, CallInfo, parties
from ..storage.history import HistoryQuery
from .departments import overview
from .format import day_start
from .i18n import translate
from .waveform import render as render_waveform

#: set when the listener closes: open event streams end at once instead of holding the shutdown
CLOSING = web.AppKey("console_closing", asyncio.Event)
STREAM_PERIOD_S = 1.0
T = TypeVar("T")


class Every(Generic[T]):
    """``compute()`` at most once per ``period`` seconds, the last result in between, however many open
    consoles ask."""

    def __init__(self, compute: Callable[[], T], period: float):
        self.compute = compute
        self.period = period
        self._at = -1e9
        self._value: T | None = None

    def get(self, now: float) -> T:
        if self._value is None or now - self._at >= self.period:
            self._value, self._at = self.compute(), now
        return self._value


def calls_json(target: Controlled) -> str:
    """The live calls as the stream sends them. Through ``act``: the clock read first, so the durations are
    current between two SIP messages."""
    op = target.operator
    calls = cast(list[CallInfo], target.act(op.calls))
    return json.dumps({"calls": [c.as_dict() for c in calls], "draining": op.b2bua.draining}, ensure_ascii=False)


def public_cdr(row: dict[str, Any], show: bool) -> dict[str, Any]:
    """What the console shows of a CDR: the URIs replaced by the (masked) numbers, codecs by name."""
    out = {k: v for k, v in row.items() if k not in ("from_uri", "to_uri")}
    out["caller"], out["callee"] = parties(row.get("from_uri") or "", row.get("to_uri") or "", row.get("department"),
                                           row.get("direction"), show)
    for leg in ("a", "b"):  # the payload type as its codec's name
        if (pt := row.get(f"{leg}_codec")) is not None:
            out[f"{leg}_codec"] = CODEC_NAMES.get(int(pt), str(pt))
    return out


def history_query(query: Any) -> HistoryQuery:
    """A search from the query string (``since``/``until`` Unix time or YYYY-MM-DD, Seoul); ValueError if bad."""
    def when(name: str, end: bool) -> float | None:
        text = (query.get(name) or "").strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            return day_start(text) + (86400 if end else 0)

    limit = int(query.get("limit") or 100)
    return HistoryQuery(since=when("since", False), until=when("until", True),
                        department=(query.get("department") or None), number=(query.get("number") or None),
                        cause=(query.get("cause") or None), limit=limit)


def recording_labels(direction: str | None, lang: str) -> tuple[str, str]:
    """Left and right channel names: the caller is left (a citizen inbound, staff outbound)."""
    citizen, staff = translate(lang, "rec.citizen"), translate(lang, "rec.staff")
    first, second = (staff, citizen) if direction == "outbound" else (citizen, staff)
    return (f"{translate(lang, 'rec.left')}: {first}", f"{translate(lang, 'rec.right')}: {second}")


def system_figures(registry: CollectorRegistry | None) -> dict[str, float]:
    """The counters and gauges the system page charts, summed over their labels."""
    wanted = {"b2bua_active_calls": "active", "b2bua_call_attempts_total": "attempts",
              "b2bua_event_loop_lag_seconds": "lag_s", "b2bua_detection_streams": "detection_streams"}
    out: dict[str, float] = dict.fromkeys(
        ("active", "attempts", "lag_s", "rtp_in", "rtp_lost", "detection_backlog", "detection_streams"), 0.0)
    detection: dict[str, float] = {}
    for family in (registry.collect() if registry is not None else ()):
        for sample in family.samples:
            if sample.name in wanted:
                out[wanted[sample.name]] += sample.value
            elif sample.name == "b2bua_rtp_packets_total" and sample.labels.get("what") in ("rtp_in", "rtp_lost"):
                out[sample.labels["what"]] += sample.value
            elif sample.name == "b2bua_detection_total":
                detection[sample.labels.get("what", "")] = sample.value
    # utterances handed to a recognizer and not judged yet
    out["detection_backlog"] = max(0.0, detection.get("utterances", 0.0) - detection.get("jobs_dropped", 0.0)
                                   - detection.get("detections", 0.0) - detection.get("errors", 0.0))
    return out


def add_api(app: web.Application, target: Controlled, registry: CollectorRegistry | None) -> None:
    snapshot = Every(lambda: calls_json(target), STREAM_PERIOD_S * 0.9)  # one listing a second for all viewers
    figures = Every(lambda: system_figures(registry), 1.0)

    async def calls_stream(request: web.Request) -> web.StreamResponse:
        if (no := refused(request, "view")) is not None:
            return no
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await resp.prepare(request)
        closing = request.app[CLOSING]
        try:
            while not closing.is_set():
                await resp.write(f"data: {snapshot.get(time.monotonic())}\n\n".encode())
                try:
                    await asyncio.wait_for(closing.wait(), STREAM_PERIOD_S)
                except TimeoutError:
                    pass
        except (ConnectionResetError, RuntimeError):  # the browser went away (RuntimeError: transport closed)
            pass
        return resp

    async def cdrs(request: web.Request) -> web.Response:
        if (no := refused(request, "view")) is not None:
            return no
        try:
            q = history_query(request.query)
        except ValueError:
            return error(400, "since/until are Unix time or YYYY-MM-DD; limit is a number")
        rows = await asyncio.to_thread(target.history.search, q)
        show = target.operator.show_numbers
        return web.json_response({"cdrs": [public_cdr(r, show) for r in rows]})

    async def cdr(request: web.Request) -> web.Response:
        if (no := refused(request, "view")) is not None:
            return no
        try:
            row = await asyncio.to_thread(target.history.call, int(request.match_info["cdr_id"]))
        except ValueError:
            row = None
        if row is None:
            return error(404, "no such call record")
        out = public_cdr(row, target.operator.show_numbers)
        out["recordings"] = [{k: v for k, v in r.items() if k != "path"} for r in row["recordings"]]
        out["abuse_events"] = [{k: v for k, v in e.items() if k != "clip_path"} for e in row["abuse_events"]]
        return web.json_response(out)

    async def waveform(request: web.Request) -> web.Response:
        found = await recording_file(target, request)
        if isinstance(found, web.Response):
            return found
        row, path = found
        lang = request.query.get("lang", "ko")
        try:
            picture = await asyncio.to_thread(render_waveform, path, recording_labels(row["direction"], lang))
        except ValueError as exc:
            return error(422, f"cannot draw this recording: {exc}")
        return web.Response(text=picture, content_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    async def clip(request: web.Request) -> web.StreamResponse:
        if (no := refused(request, "listen")) is not None:
            return no
        event_id = request.match_info["event_id"]
        event = await asyncio.to_thread(target.abuse_events.event, event_id)
        if event is None or not event.get("clip_path") or not (path := Path(event["clip_path"])).is_file():
            return error(404, "no such event (or it has no clip)")
        if starts_playback(request):
            audit(target, request, "play_clip", event_id, str(path))
        return web.FileResponse(path, headers={"X-Content-SHA256": event["clip_sha256"] or "",
                                               "Cache-Control": "no-store"})

    async def departments(request: web.Request) -> web.Response:
        if (no := refused(request, "view")) is not None:
            return no
        rows = overview(target.config, target.wall_clock())
        return web.json_response({"departments": [
            {**asdict(d), "numbers": list(d.numbers), "next_at": d.next_at.isoformat() if d.next_at else None}
            for d in rows]})

    async def system(request: web.Request) -> web.Response:
        if (no := refused(request, "view")) is not None:
            return no
        return web.json_response({"ready": target.ready, "config": str(target.config.path),
                                  "started": target.started_at, "now": time.time(),
                                  "last_reload": target.last_reload, "figures": figures.get(time.monotonic())})

    app[CLOSING] = asyncio.Event()
    app.router.add_get("/api/calls/stream", calls_stream)
    app.router.add_get("/api/cdrs", cdrs)
    app.router.add_get("/api/cdrs/{cdr_id}", cdr)
    app.router.add_get("/api/recordings/{rec_id}/waveform.svg", waveform)
    app.router.add_get("/api/abuse/events/{event_id}/clip", clip)
    app.router.add_get("/api/departments", departments)
    app.router.add_get("/api/system", system)


__all__ = ["CLOSING", "Every", "add_api", "calls_json", "history_query", "public_cdr", "recording_labels",
           "system_figures"]
