"""The console's words in Korean (the default) and English.

A plain table rather than gettext catalogues: the console has a hundred short strings, both languages are
edited together here, and a missing key shows itself as the key (tests check that both languages have
every key).
"""

from __future__ import annotations

LANGUAGES = ("ko", "en")
DEFAULT = "ko"

MESSAGES: dict[str, tuple[str, str]] = {  # key: (Korean, English)
    "app.title": ("민원 전화 운영 콘솔", "Call operations console"),
    "nav.live": ("실시간 통화", "Live calls"),
    "nav.history": ("통화 이력", "Call history"),
    "nav.recordings": ("녹음", "Recordings"),
    "nav.abuse": ("폭언 검토", "Abuse review"),
    "nav.departments": ("부서 상황", "Departments"),
    "nav.system": ("시스템", "System"),
    "nav.audit": ("열람 기록", "Access audit"),
    "nav.logout": ("로그아웃", "Log out"),
    "login.title": ("로그인", "Log in"),
    "login.name": ("아이디", "User name"),
    "login.password": ("비밀번호", "Password"),
    "login.submit": ("로그인", "Log in"),
    "login.failed": ("아이디 또는 비밀번호가 맞지 않습니다.", "Wrong user name or password."),
    "login.locked": ("로그인 실패가 많아 1분간 잠겼습니다.", "Too many failed logins: locked for a minute."),
    "role.viewer": ("조회자", "viewer"),
    "role.operator": ("운영자", "operator"),
    "role.auditor": ("감사자", "auditor"),
    "live.title": ("실시간 통화", "Live calls"),
    "live.none": ("진행 중인 통화가 없습니다.", "No calls in progress."),
    "live.draining": ("종료 준비 중: 새 통화를 받지 않습니다.", "Draining: new calls are refused."),
    "live.hangup": ("통화 종료", "Hang up"),
    "live.hangup_confirm": ("이 통화를 종료할까요?", "End this call?"),
    "live.count": ("진행 중", "in progress"),
    "state.routing": ("경로 선택", "routing"),
    "state.proceeding": ("연결 중", "proceeding"),
    "state.early": ("호출 중", "ringing"),
    "state.answered": ("응답됨", "answered"),
    "state.confirmed": ("통화 중", "talking"),
    "state.cancelling": ("취소 중", "cancelling"),
    "state.terminating": ("종료 중", "ending"),
    "state.ended": ("종료됨", "ended"),
    "live.connected": ("실시간 연결됨", "live"),
    "live.disconnected": ("연결 끊김, 다시 연결 중", "disconnected, reconnecting"),
    "col.id": ("통화", "Call"),
    "col.department": ("부서", "Department"),
    "col.direction": ("방향", "Direction"),
    "col.state": ("상태", "State"),
    "col.duration": ("통화 시간", "Duration"),
    "col.caller": ("발신", "Caller"),
    "col.callee": ("수신", "Callee"),
    "col.recording": ("녹음", "Recording"),
    "col.codec": ("코덱", "Codec"),
    "col.start": ("시작", "Start"),
    "col.end": ("종료", "End"),
    "col.cause": ("종료 사유", "End cause"),
    "col.status": ("응답 코드", "Status"),
    "col.trunk": ("트렁크", "Trunk"),
    "col.route": ("경로", "Route"),
    "col.ended_by": ("종료한 쪽", "Ended by"),
    "col.size": ("크기", "Size"),
    "col.format": ("형식", "Format"),
    "col.reason": ("녹음 사유", "Reason"),
    "col.time": ("시각", "Time"),
    "col.category": ("유형", "Category"),
    "col.score": ("점수", "Score"),
    "col.transcript": ("인식된 말", "Transcript"),
    "col.shout": ("고성", "Shouting"),
    "col.action": ("조치", "Action"),
    "col.label": ("판정", "Label"),
    "col.user": ("사용자", "User"),
    "col.role": ("역할", "Role"),
    "col.target": ("대상", "Target"),
    "col.remote": ("접속 주소", "From"),
    "col.detail": ("내용", "Detail"),
    "col.situation": ("지금 상황", "Now"),
    "col.hears": ("시민이 듣는 안내", "What a caller hears"),
    "col.next": ("다음 변경", "Next change"),
    "col.numbers": ("대표번호", "Numbers"),
    "col.policy": ("녹음 정책", "Recording policy"),
    "dir.inbound": ("수신(시민→부서)", "inbound"),
    "dir.outbound": ("발신(직원→시민)", "outbound"),
    "yes": ("예", "yes"),
    "no": ("아니오", "no"),
    "history.title": ("통화 이력", "Call history"),
    "history.since": ("시작일", "From"),
    "history.until": ("종료일", "To"),
    "history.number": ("전화번호", "Number"),
    "history.any": ("전체", "any"),
    "history.search": ("검색", "Search"),
    "history.none": ("조건에 맞는 통화가 없습니다.", "No calls match."),
    "history.limit": ("최근 {n}건까지 표시합니다.", "Showing the newest {n} at most."),
    "call.title": ("통화 상세", "Call detail"),
    "call.legs": ("양쪽 통화 구간", "Both legs"),
    "call.leg_a": ("A 구간(발신 쪽)", "Leg A (caller side)"),
    "call.leg_b": ("B 구간(수신 쪽)", "Leg B (callee side)"),
    "call.packets": ("수신/송신/손실 패킷", "packets in / out / lost"),
    "call.jitter": ("지터", "jitter"),
    "call.cdr": ("통화 기록(CDR)", "CDR"),
    "call.no_recording": ("이 통화의 녹음이 없습니다.", "This call has no recording."),
    "call.no_events": ("폭언 기록이 없습니다.", "No abuse events."),
    "rec.title": ("녹음", "Recordings"),
    "rec.play": ("재생", "Play"),
    "rec.download": ("내려받기", "Download"),
    "rec.left": ("왼쪽", "left"),
    "rec.right": ("오른쪽", "right"),
    "rec.citizen": ("시민", "citizen"),
    "rec.staff": ("직원", "staff"),
    "rec.listen_denied": ("녹음 청취는 감사자만 할 수 있습니다.", "Only auditors may listen to recordings."),
    "rec.audited": ("재생과 내려받기는 모두 열람 기록에 남습니다.", "Every playback and download is on record."),
    "rec.none": ("녹음이 없습니다.", "No recordings."),
    "abuse.title": ("폭언 검토", "Abuse review"),
    "abuse.unlabelled": ("미판정만", "Unlabelled only"),
    "abuse.all": ("전체", "All"),
    "abuse.confirm": ("폭언 맞음", "Confirm"),
    "abuse.reject": ("폭언 아님", "Reject"),
    "abuse.none": ("검토할 기록이 없습니다.", "Nothing to review."),
    "abuse.learn": ("판정은 다음 재학습(b2bua abuse retrain)에 쓰입니다.",
                    "Labels feed the next retraining (b2bua abuse retrain)."),
    "label.unlabelled": ("미판정", "unlabelled"),
    "label.confirmed": ("폭언 맞음", "confirmed"),
    "label.rejected": ("폭언 아님", "rejected"),
    "dept.title": ("부서 상황", "Departments"),
    "dept.closed": ("연결하지 않고 안내 후 종료(응답 {status})", "not put through: the prompt, then {status}"),
    "dept.fallback": ("안내 후 {to}(으)로 돌림", "the prompt, then on to {to}"),
    "dept.notice": ("녹음 안내({prompt})", "the recording notice ({prompt})"),
    "dept.ringback": ("연결음: {prompt}", "ringback: {prompt}"),
    "dept.never": ("변경 없음", "no change ahead"),
    "sys.title": ("시스템", "System"),
    "sys.config": ("설정 파일", "Configuration"),
    "sys.last_reload": ("마지막 다시 읽기", "Last reload"),
    "sys.never": ("시작 후 다시 읽은 적 없음", "not reloaded since start"),
    "sys.ok": ("정상 적용", "applied"),
    "sys.failed": ("거부됨: 실행 중인 설정 유지", "refused: the running configuration stays"),
    "sys.needs_restart": ("재시작해야 적용", "needs a restart"),
    "sys.state": ("상태", "State"),
    "sys.ready": ("새 통화 수신", "taking calls"),
    "sys.not_ready": ("새 통화 거절 중(종료 준비 또는 과부하)", "refusing calls (draining or overloaded)"),
    "sys.active": ("진행 중인 통화", "Calls in progress"),
    "sys.cps": ("초당 새 통화", "New calls per second"),
    "sys.loss": ("RTP 손실률(%)", "RTP loss (%)"),
    "sys.backlog": ("음성 인식 대기", "Detection backlog"),
    "sys.lag": ("이벤트 루프 지연(ms)", "Event loop lag (ms)"),
    "sys.uptime": ("가동 시간", "Uptime"),
    "audit.title": ("열람 기록", "Access audit"),
    "audit.none": ("기록이 없습니다.", "No rows."),
    "error.forbidden": ("권한이 없습니다.", "You may not do this."),
    "error.not_found": ("찾을 수 없습니다.", "Not found."),
    "situation.open": ("업무 중", "open"),
    "situation.lunch": ("점심시간", "lunch break"),
    "situation.after_hours": ("업무 시간 외", "after hours"),
    "situation.holiday": ("공휴일", "public holiday"),
    "situation.moved": ("사무실 이전", "office moved"),
    "situation.construction": ("공사 중", "construction"),
    "situation.closed": ("휴무", "closed"),
    "lang.other": ("English", "한국어"),
}


def translate(lang: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``lang`` with ``{name}`` filled from ``values``; the key itself when unknown."""
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    text = pair[1] if lang == "en" else pair[0]
    return text.format(**values) if values else text


def situation_name(lang: str, situation: str) -> str:
    """A situation's name (a configured one without a translation shows as configured)."""
    key = f"situation.{situation}"
    return translate(lang, key) if key in MESSAGES else situation


def pick(requested: str | None, cookie: str | None) -> str:
    """The page's language: ``?lang=`` first, then the cookie, else Korean."""
    for lang in (requested, cookie):
        if lang in LANGUAGES:
            return lang
    return DEFAULT


__all__ = ["DEFAULT", "LANGUAGES", "MESSAGES", "pick", "situation_name", "translate"]
