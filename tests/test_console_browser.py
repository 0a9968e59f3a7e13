"""The operator console in a real browser: Debian's chromium, headless, driven by Playwright (pointed at the
system browser; Playwright's own browser download is never used).

A citizen (SIPp, carrier trunk) calls a department that records every call; the staff phone (SIPp, PBX
trunk) answers; both send audio. An operator logs in, sees the call appear on the live page by itself,
hangs it up from the page (both SIPp peers get the BYE), finds it in the history, opens it and confirms
its abuse event; an auditor then plays its recording in the page (the audio element loads, reports the
recording's length and plays) and finds the playback on the audit page. Every page is saved as a
screenshot under ``test-artifacts/console/``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from admin_client import HASHES, PASSWORDS, ROLES
from harness import ROOT, free_port
from rtp_peer import RtpPeer, sdp_port, speech_like
from test_e2e_protection import _recordings, _wait_for, citizen, finish, staff_phone, start

from b2bua.detection.events import AbuseEvent
from b2bua.storage.abuse import AbuseEvents
from b2bua.storage.cdr import open_database

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sipp_installed", "chromium_installed")]

ARTIFACTS = ROOT / "test-artifacts" / "console"
#: what the machine needs of a headless browser: no sandbox as root, nothing fetched from the internet
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required"]
from test_e2e_protection import peers  # noqa: E402,F401  (the citizen's and the staff phone's RTP peers)


@pytest.fixture
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _shot(page, name: str) -> None:  # noqa: ANN001
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _login(page, base: str, name: str, then: str = "/live") -> None:  # noqa: ANN001
    page.goto(f"{base}{then}")
    page.wait_for_url(lambda url: "/login?next=" in url)  # every page sends a stranger to the login first
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: url.endswith(then))


def test_operator_and_auditor_work_a_real_call_in_the_browser(
        tmp_path: Path, peers: tuple[RtpPeer, RtpPeer], browser) -> None:  # noqa: ANN001, F811
    a, b = peers
    uas_port, admin = free_port("127.0.0.3"), free_port()
    base = f"http://127.0.0.1:{admin}"
    users = [{"name": n, "password_hash": HASHES[n], "role": ROLES[n]} for n in PASSWORDS]
    policy = {"recording": "full", "ringback": {"default": "city_notice"}}
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="ko-KR")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with staff_phone(tmp_path, uas_port, b, ring_ms=500):
        proc, port = start(tmp_path, uas_port, policy, process={
            "metrics": {"address": f"127.0.0.1:{admin}"},
            "admin": {"socket": None, "token_env": "B2BUA_TEST_NO_TOKEN", "users": users}})
        try:
            _login(page, base, "lee")
            page.wait_for_selector("#stream-state.on")  # the event stream is connected
            uac = citizen(tmp_path, port, a, "uac_rtp_early_remote_bye.xml")
            b_target = ("127.0.0.1", sdp_port(tmp_path / "uas_msg.log", "INVITE sip:", timeout=20))
            a_target = ("127.0.0.1", sdp_port(tmp_path / "uac_msg.log", "SIP/2.0 200", timeout=20))
            talk = [threading.Thread(target=a.send_audio, args=(a_target, speech_like(3.0, seed=5), 0)),
                    threading.Thread(target=b.send_audio, args=(b_target, speech_like(3.0, seed=6) // 2, 0))]
            for t in talk:
                t.start()
            # the call appears on the live page by itself (no reload), answered
            row = page.wait_for_selector("#calls tbody tr[data-state='confirmed']", timeout=20_000)
            call_id = row.get_attribute("data-call")
            assert call_id and "교통정책과" in row.inner_text() and "통화 중" in row.inner_text()
            for t in talk:
                t.join()
            page.wait_for_selector(f"#calls tr[data-call='{call_id}'] td:nth-child(5):text-matches('^0:0[2-9]$')")
            _shot(page, "live")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click(f"button.hangup[data-call='{call_id}']")
            finish(uac)  # the citizen got the BYE and answered it (SIPp's scenario ends only so)
            _wait_for(lambda: "BYE sip:" in (tmp_path / "uas_msg.log").read_text())  # so did the staff phone
            page.wait_for_selector("#calls tbody tr.empty", timeout=10_000)  # gone from the live page
            proc.settle()
            _wait_for(lambda: any(r["status"] == "complete" for r in _recordings(tmp_path)))
            (rec,) = _recordings(tmp_path)
            db = f"sqlite:///{tmp_path / 'var' / 'b2bua.sqlite3'}"
            events = AbuseEvents(open_database(db), tmp_path / "var" / "recordings")
            clip = (speech_like(1.0, seed=9)).astype(np.int16).tobytes()
            events.record(AbuseEvent("ev-browser", call_id, "sip-call@x", "교통정책과", 1.2, "insult", 0.93,
                                     "이 개새끼야", "whisper-base", "m1", "warned", 7.5, clip))
            events.flush()
            # CDRs are written once a second, from a worker thread: the row is there before the history is searched
            _wait_for(lambda: any(c["call_id"] == call_id for c in page.request.get(
                f"{base}/api/cdrs?number=02-2133-2200").json()["cdrs"]))
            # the history: searched by the number the citizen dialled, the call's detail page
            page.goto(f"{base}/history")
            page.fill("input[name=number]", "02-2133-2200")
            page.click("form.filters button[type=submit]")
            link = page.wait_for_selector(f"#history tr[data-call='{call_id}'] a")
            _shot(page, "history")
            link.click()
            page.wait_for_selector("text=통화 상세")
            assert page.query_selector("figure.recording audio") is None  # an operator does not listen
            page.click("button.label-btn[data-event='ev-browser'][data-confirm='true']")
            page.wait_for_selector("tr[data-event='ev-browser'] td.label:text-is('폭언 맞음')")
            stored = events.event("ev-browser")
            assert stored is not None and (stored["label"], stored["labelled_by"]) == ("confirmed", "lee")
            events.close()
            detail = page.url
            page.goto(f"{base}/abuse?label=all")
            page.wait_for_selector("tr[data-event='ev-browser']")
            _shot(page, "abuse")
            page.click("#logout")
            page.wait_for_url("**/login")
            # the auditor plays the recording in the page
            _login(page, base, "park", then=detail.removeprefix(base))
            page.wait_for_function("() => { const i = document.querySelector('img.waveform');"
                                   " return i && i.complete && i.naturalWidth > 0; }")
            page.evaluate("() => { const a = document.querySelector('figure.recording audio');"
                          " a.muted = true; return a.play(); }")
            page.wait_for_function("() => { const a = document.querySelector('figure.recording audio');"
                                   " return isFinite(a.duration) && a.duration > 0 && a.currentTime > 0.2; }",
                                   timeout=20_000)
            duration = page.evaluate("() => document.querySelector('figure.recording audio').duration")
            assert abs(duration - rec["duration"]) < 0.1, (duration, rec["duration"])
            _shot(page, "call")
            page.goto(f"{base}/audit")
            page.wait_for_selector(f"#audit tr:has(td:text-is('park')):has(td:text-is('play'))"
                                   f":has(code:text-is('{rec['path']}'))")
            _shot(page, "audit")
            page.goto(f"{base}/departments")  # the clock is Wednesday 10:00 in Seoul (B2BUA_FAKE_NOW)
            row = page.wait_for_selector("tr[data-department='교통정책과']")
            assert row.query_selector("td.situation").inner_text() == "업무 중"
            assert "2026-12-02 12:00 → 점심시간" in row.inner_text() and "recording_notice" in row.inner_text()
            _shot(page, "departments")
            for name in ("recordings", "system"):
                page.goto(f"{base}/{name}")
                if name == "system":
                    page.wait_for_function("() => document.querySelector('[data-chart=cps] polyline')"
                                           ".getAttribute('points').split(' ').length >= 2")
                _shot(page, name)
            page.goto(f"{base}/live?lang=en")
            page.wait_for_selector("h1:text-is('Live calls')")
            _shot(page, "live-en")
            page.click("#logout")
            page.wait_for_url("**/login")
            _shot(page, "login")
        finally:
            context.close()
            proc.stop()
    assert not errors, errors  # no script error on any page
    assert "Traceback" not in proc.log()
