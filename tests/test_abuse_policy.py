"""The abuse policy (b2bua/detection/policy.py) on the fake-clock harness: warn, end, cooldown, shouting,
the staff's report key, evidence rows and clips."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from flows import A, B, reply
from sqlalchemy import create_engine
from test_protection import FakeEngine, FakePrompts, World, department

from b2bua.call.features import FeatureChain
from b2bua.detection.events import AbuseEvent, Detection, EvidenceClip
from b2bua.detection.policy import TERMINATED_REASON, AbuseProtection
from b2bua.storage.abuse import AbuseEvents


class TapEngine(FakeEngine):
    def tap(self, session: str, leg: str, on: bool = True) -> None:
        self.commands.append(("tap", leg, on))


class Kept(list[AbuseEvent]):
    def __init__(self) -> None:
        super().__init__()
        self.clips: list[tuple[str, bytes]] = []

    def record(self, event: AbuseEvent) -> None:
        self.append(event)

    def replace_clip(self, event_id: str, clip: bytes) -> None:
        self.clips.append((event_id, clip))


ABUSE = {"enabled": True, "end_after": 2, "cooldown_s": 8, "report_key": "*7", "threshold": 0.5}


def _world(abuse: dict[str, Any] | None = None, evidence: Any = None) -> tuple[World, AbuseProtection, Any]:
    w = World(department(recording="off", abuse=abuse or ABUSE))
    w.engine = TapEngine()
    w.h.b2bua.engine = w.engine  # type: ignore[assignment]
    kept = evidence if evidence is not None else Kept()
    guard = AbuseProtection(w.h.b2bua, departments=w.depts.get, prompts=FakePrompts(), evidence=kept)
    w.h.b2bua.features = FeatureChain(guard, w.protection)
    return w, guard, kept


def _said(w: World, text: str, category: str | None, score: float, **kw: Any) -> Detection:
    return Detection(w.call_id, kw.pop("leg", "a"), 1.0, 2.5, text, category, score, category is not None,
                     asr_engine="whisper-base", model_version="m1", clip=np.arange(800, dtype=np.int16).tobytes(),
                     **kw)


def test_an_answered_call_of_a_monitored_department_taps_the_citizen() -> None:
    w, guard, _ = _world()
    w.invite()
    b_inv = next(s for s in w.h.take(B) if s.method == "INVITE")
    assert ("tap", "a", True) not in w.engine.commands  # nothing is heard before the answer
    w.answer(b_inv)
    assert ("tap", "a", True) in w.engine.take("tap")
    assert w.call_id in guard.calls


def test_the_segmenter_is_told_the_departments_settings_and_when_the_call_ends() -> None:
    w, guard, _ = _world({**ABUSE, "shout_dbfs": -3.0, "shout_seconds": 1.5})
    watched: list[tuple[str, str, float, float]] = []
    ended: list[str] = []
    guard.on_monitor = lambda session, leg, policy: watched.append((session, leg, policy.shout_dbfs,
                                                                    policy.shout_seconds))
    guard.on_unmonitor = ended.append
    w.talking()
    call_id = w.call_id
    assert watched == [(call_id, "a", -3.0, 1.5)] and ended == []
    w.h.b2bua.end_call(w.h.b2bua.calls[call_id], "operator_hangup", "Q.850;cause=16")
    w.h.settle()
    for side, bye in ((w.h.from_a, w.h.take(A)[0]), (w.h.from_b, w.h.take(B)[0])):
        side(reply(bye, 200, "OK"))
    assert ended == [call_id] and not guard.calls


def test_a_department_without_detection_is_never_tapped() -> None:
    w, guard, _ = _world({"enabled": False})
    w.talking()
    assert w.engine.take("tap") == [] and not guard.calls


def test_first_detection_warns_both_the_second_ends_the_call_with_a_reason() -> None:
    w, guard, kept = _world()
    w.talking()
    guard.on_detection(_said(w, "씨발 뭐하는 거야", "profanity", 0.93))
    plays = w.engine.take("play")
    assert ("play", "a", "abuse_warning", False, True) in plays and ("play", "b", "abuse_warning", False, True) in plays
    assert w.h.take(A) == [] and w.h.take(B) == []
    w.h.advance(10_000)  # past the cooldown
    guard.on_detection(_said(w, "이 개새끼야", "insult", 0.88))
    plays = w.engine.take("play")
    assert sorted(plays) == [("play", "a", "abuse_termination", False, True),
                             ("play", "b", "abuse_termination", False, True)]
    w.play_done("a", "abuse_termination")
    bye_a, bye_b = w.h.take(A), w.h.take(B)
    assert [s.method for s in bye_a] == ["BYE"] and [s.method for s in bye_b] == ["BYE"]
    assert bye_a[0].msg.get("reason") == TERMINATED_REASON == bye_b[0].msg.get("reason")
    w.h.from_a(reply(bye_a[0], 200, "OK"))
    w.h.from_b(reply(bye_b[0], 200, "OK"))
    assert w.h.records[-1].cause == "abuse_terminated" and w.h.records[-1].ended_by == "b2bua"
    assert [(e.category, e.action) for e in kept] == [("profanity", "warned"), ("insult", "terminated")]
    first = kept[0]
    assert first.transcript == "씨발 뭐하는 거야" and first.score == 0.93 and first.department == "교통정책과"
    assert first.asr_engine == "whisper-base" and first.clip and first.offset >= 0
    assert not guard.calls  # forgotten with the call


def test_a_threat_ends_the_call_at_once_and_the_bye_comes_even_without_play_done() -> None:
    w, guard, kept = _world()
    w.talking()
    guard.on_detection(_said(w, "퇴근길 조심해라", "threat", 0.81))
    assert {c[2] for c in w.engine.take("play")} == {"abuse_termination"}
    w.h.advance(2000 + 2100)  # the prompt's length and the grace
    assert [s.method for s in w.h.take(A)] == ["BYE"]
    assert [(e.category, e.action) for e in kept] == [("threat", "terminated")]


def test_one_outburst_is_one_detection_and_what_scores_low_is_nothing() -> None:
    w, guard, kept = _world()
    w.talking()
    guard.on_detection(_said(w, "씨발", "profanity", 0.9))
    w.h.advance(3000)  # inside the cooldown
    guard.on_detection(_said(w, "씨발 진짜", "profanity", 0.95))
    guard.on_detection(_said(w, "애매한 말", "insult", 0.3))  # under the threshold
    guard.on_detection(_said(w, "너무 답답하네요", None, 0.1))
    assert [(e.category, e.action) for e in kept] == [("profanity", "warned"), ("profanity", "recorded")]
    assert w.h.b2bua.calls and guard.calls[w.call_id].count == 1


def test_shouting_alone_is_kept_and_never_acted_on() -> None:
    w, guard, kept = _world()
    w.talking()
    for _ in range(3):
        guard.on_detection(_said(w, "왜 처리가 안 되냐고요", None, 0.2, shout_excess_db=14.0))
        w.h.advance(10_000)
    assert [(e.category, e.action, e.shout_excess_db) for e in kept] == [("shouting", "recorded", 14.0)] * 3
    assert w.engine.take("play") == [] and w.h.b2bua.calls


def test_the_staff_key_reports_abuse_with_what_was_last_said_and_warns() -> None:
    w, guard, kept = _world()
    w.talking()
    guard.on_detection(_said(w, "목소리 예쁜데", None, 0.3))
    guard.on_detection(_said(w, "몇 살이야", None, 0.4))
    w.key("a", "*7")  # the citizen's keypad does nothing
    assert kept == []
    w.key("b", "*7")
    assert [(e.category, e.action, e.reported_by) for e in kept] == [("reported", "warned", "staff")]
    assert kept[0].transcript == "목소리 예쁜데 / 몇 살이야"
    assert {c[1] for c in w.engine.take("play")} == {"a", "b"}


def test_the_staff_members_words_are_never_judged() -> None:
    w, guard, kept = _world()
    w.talking()
    guard.on_detection(_said(w, "씨발", "profanity", 0.99, leg="b"))
    assert kept == [] and w.engine.take("play") == []


def test_evidence_rows_and_clips_with_their_sha256_and_labels(tmp_path: Path) -> None:
    store = AbuseEvents(create_engine(f"sqlite:///{tmp_path / 'b2bua.db'}"), tmp_path / "recordings")
    w, guard, _ = _world(evidence=store)
    w.talking()
    guard.on_detection(_said(w, "씨발 뭐하는 거야", "profanity", 0.93, shout_excess_db=12.5))
    store.flush()
    (row,) = store.events(call_id=w.call_id)
    assert row["category"] == "profanity" and row["action"] == "warned" and row["label"] == "unlabelled"
    assert row["transcript"] == "씨발 뭐하는 거야" and row["shout_excess_db"] == 12.5
    clip = Path(row["clip_path"])
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == row["clip_sha256"]
    with av.open(str(clip)) as f:
        got = np.concatenate([fr.to_ndarray().ravel() for fr in f.decode(audio=0)])
    assert np.array_equal(got, np.arange(800, dtype=np.int16))
    assert store.label(row["event_id"], confirmed=True, who="kim@traffic") is True
    assert store.label("nope", confirmed=False, who="x") is False
    (row,) = store.events(call_id=w.call_id)
    assert row["label"] == "confirmed" and row["labelled_by"] == "kim@traffic" and row["labelled_at"] > 0
    assert store.purge("교통정책과", older_than_days=1, now=row["created"] + 2 * 86400) == 1
    assert store.events() == [] and not clip.exists()
    store.close()


def _read_wav(path: Path) -> np.ndarray:
    with av.open(str(path)) as f:
        return np.concatenate([fr.to_ndarray().ravel() for fr in f.decode(audio=0)])


def test_the_whole_clip_replaces_the_first_one_whichever_comes_first() -> None:
    w, guard, kept = _world()
    w.talking()
    whole = np.arange(4000, dtype=np.int16).tobytes()
    guard.on_detection(_said(w, "씨발 뭐하는 거야", "profanity", 0.93))  # stored at once with what there was
    assert kept[0].clip == np.arange(800, dtype=np.int16).tobytes() and kept.clips == []
    guard.on_clip(EvidenceClip(w.call_id, "a", 1.0, whole, 0.0))
    assert kept.clips == [(kept[0].event_id, whole)]
    guard.on_clip(EvidenceClip(w.call_id, "a", 1.0, whole, 0.0))  # once only
    assert len(kept.clips) == 1
    # a clip that comes before its detection (recognition was slow) is the one the event is stored with
    w.h.advance(10_000)
    guard.on_clip(EvidenceClip(w.call_id, "a", 7.0, whole, 5.0))
    guard.on_detection(Detection(w.call_id, "a", 7.0, 8.0, "개새끼", "insult", 0.9, True, clip=b"\0\0"))
    assert kept[1].clip == whole and len(kept.clips) == 1
    guard.on_clip(EvidenceClip("another call", "a", 7.0, b"\1\1", 5.0))  # nobody's: nothing
    assert len(kept.clips) == 1 and len(kept) == 2


def test_the_stored_clip_and_its_sha256_are_replaced_by_the_whole_clip(tmp_path: Path) -> None:
    store = AbuseEvents(create_engine(f"sqlite:///{tmp_path / 'b2bua.db'}"), tmp_path / "recordings")
    w, guard, _ = _world(evidence=store)
    w.talking()
    guard.on_detection(_said(w, "씨발 뭐하는 거야", "profanity", 0.93))
    whole = np.arange(-2000, 2000, dtype=np.int16)
    guard.on_clip(EvidenceClip(w.call_id, "a", 1.0, whole.tobytes(), 0.0))
    store.flush()
    (row,) = store.events(call_id=w.call_id)
    clip = Path(row["clip_path"])
    assert np.array_equal(_read_wav(clip), whole)
    assert hashlib.sha256(clip.read_bytes()).hexdigest() == row["clip_sha256"]
    assert store.counts["clips_completed"] == 1 and store.counts["written"] == 1
    assert list(clip.parent.iterdir()) == [clip]  # replaced, not a second file
    store.close()


@pytest.mark.parametrize("bad", [{"report_key": "*1"}, {"warn_prompt": "no_such_prompt"}])
def test_config_refuses_a_clashing_key_or_a_missing_prompt(tmp_path: Path, bad: dict[str, Any]) -> None:
    import yaml

    from b2bua.config import ConfigError, load_config

    root = Path(__file__).resolve().parents[1] / "config"
    routing = yaml.safe_load((root / "routing.yaml").read_text())
    routing["departments"][0].setdefault("policy", {})["abuse"] = {"enabled": True, **bad}
    routing["departments"][0]["policy"]["recording_key"] = "*1"
    for name in ("b2bua.yaml", "holidays.yaml"):
        (tmp_path / name).write_text((root / name).read_text())
    (tmp_path / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "b2bua.yaml")
    problems = [p for p in err.value.problems if "policy.abuse" in p]
    assert problems and all(p.startswith(f"{tmp_path / 'routing.yaml'}:") for p in problems), err.value.problems
    print(problems)


def test_check_config_reads_the_lexicon_when_a_department_uses_detection(tmp_path: Path) -> None:
    import yaml

    from b2bua.config import ConfigError, load_config

    root = Path(__file__).resolve().parents[1] / "config"
    routing = yaml.safe_load((root / "routing.yaml").read_text())
    routing["departments"][0].setdefault("policy", {})["abuse"] = {"enabled": True}
    for name in ("b2bua.yaml", "holidays.yaml"):
        (tmp_path / name).write_text((root / name).read_text())
    (tmp_path / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
    (tmp_path / "abuse_lexicon.yaml").write_text("categories:\n  insults:\n    weight: 0.9\n    entries: [바보]\n",
                                                 encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "b2bua.yaml")
    problems = err.value.problems
    assert problems and all(p.startswith(f"{tmp_path / 'abuse_lexicon.yaml'}:") for p in problems), problems
    (tmp_path / "abuse_lexicon.yaml").write_text((root / "abuse_lexicon.yaml").read_text(encoding="utf-8"),
                                                 encoding="utf-8")
    assert load_config(tmp_path / "b2bua.yaml").routing.departments[0].policy.abuse.enabled


def test_retention_purges_each_department_by_its_own_days(tmp_path: Path) -> None:
    store = AbuseEvents(create_engine(f"sqlite:///{tmp_path / 'b2bua.db'}"), tmp_path / "recordings")
    for n, dept in enumerate(["교통정책과", "민원여권과", "폐지된과"]):
        store.record(AbuseEvent(f"e{n}", f"c{n}", "x", dept, 1.0, "insult", 0.9, "바보", "w", "m", "warned", None,
                                np.zeros(160, np.int16).tobytes()))
    store.flush()
    created = store.events()[0]["created"]
    later = created + 40 * 86400  # 40 days on
    assert store.purge_all({"교통정책과": 30, "민원여권과": 90}, now=later) == 1  # only 교통정책과's 30 days passed
    assert sorted(r["department"] for r in store.events()) == ["민원여권과", "폐지된과"]
    assert store.purge_all({"교통정책과": 30, "민원여권과": 90}, now=created + 100 * 86400) == 2
    assert store.events() == []
    store.close()
