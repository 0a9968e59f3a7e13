"""Abuse classifier: held-out figures of the text model and the combined score, look-alikes and angry but
clean sentences that must never fire, the model cache (reuse, invalidation when the data changes)."""

from __future__ import annotations

import shutil
from pathlib import Path

import joblib
import pytest

from b2bua.abuse.classifier import AbuseClassifier
from b2bua.abuse.corpora import DATA_DIR, PHONE_FILE, TRAINING_FILES, Sample, data_hashes, is_held_out
from b2bua.abuse.evaluation import Evaluation, evaluate
from b2bua.abuse.lexicon import load_lexicon
from b2bua.abuse.textmodel import (
    RECIPE,
    CacheMismatch,
    Loaded,
    held_out_samples,
    load_cached,
    load_or_train,
    model_version,
    shipped_samples,
    split,
)

ROOT = Path(__file__).resolve().parents[1]
LEXICON = ROOT / "config" / "abuse_lexicon.yaml"


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """The shipped model, trained once per session into a cache the other abuse tests share."""
    return load_or_train(tmp_path_factory.getbasetemp() / "abuse-models")


@pytest.fixture(scope="module")
def classifier(loaded: Loaded) -> AbuseClassifier:
    return AbuseClassifier(load_lexicon(LEXICON), loaded.model)


@pytest.fixture(scope="module")
def held_out() -> list[Sample]:
    return held_out_samples()


def _check_floors(evaluation: Evaluation, floors: dict[str, float]) -> None:
    table = evaluation.table()
    print("\n" + table)
    low = {label: round(evaluation[label].f1, 3) for label, floor in floors.items() if evaluation[label].f1 < floor}
    assert not low, f"F1 under its floor {floors}: {low}\n{table}"


# -- held-out figures ------------------------------------------------------------------------------

def test_held_out_rows_were_not_trained_on() -> None:
    train, test = split(shipped_samples())
    assert {s.text for s in train if s.source == PHONE_FILE}.isdisjoint(s.text for s in test if s.source == PHONE_FILE)
    phone = [s for s in test if s.source == PHONE_FILE]
    assert all(is_held_out(s.text, RECIPE["held_out_phone"]) for s in phone)
    assert {s.label for s in phone} == {"none", "profanity", "insult", "threat", "sexual_harassment"}


def test_text_model_on_the_corpora_held_out(loaded: Loaded, held_out: list[Sample]) -> None:
    rows = [s for s in held_out if s.source != PHONE_FILE]
    evaluation = evaluate("text model, public corpora held out", [s.label for s in rows],
                          loaded.model.predict([s.text for s in rows]))
    _check_floors(evaluation, {"none": 0.76, "insult": 0.60, "profanity": 0.62})


def test_text_model_on_the_phone_sentences_held_out(classifier: AbuseClassifier, held_out: list[Sample]) -> None:
    rows = [s for s in held_out if s.source == PHONE_FILE]
    predicted = classifier.model.predict([classifier.lexicon.model_view(s.text) for s in rows])
    evaluation = evaluate("text model alone, phone sentences held out", [s.label for s in rows], predicted)
    _check_floors(evaluation, {"none": 0.65, "profanity": 0.45, "insult": 0.40, "threat": 0.45,
                               "sexual_harassment": 0.50})


def test_combined_classifier_on_the_phone_sentences_held_out(classifier: AbuseClassifier,
                                                             held_out: list[Sample]) -> None:
    rows = [s for s in held_out if s.source == PHONE_FILE]
    verdicts = classifier.classify_many([s.text for s in rows])
    evaluation = evaluate("lexicon + model, phone sentences held out", [s.label for s in rows],
                          [v.category or "none" for v in verdicts])
    _check_floors(evaluation, {"none": 0.80, "profanity": 0.80, "insult": 0.80, "threat": 0.70,
                               "sexual_harassment": 0.75})


def test_combined_classifier_on_the_corpora_held_out(classifier: AbuseClassifier, held_out: list[Sample]) -> None:
    rows = [s for s in held_out if s.source != PHONE_FILE]
    verdicts = classifier.classify_many([s.text for s in rows])
    evaluation = evaluate("lexicon + model, public corpora held out", [s.label for s in rows],
                          [v.category or "none" for v in verdicts])
    _check_floors(evaluation, {"none": 0.76, "insult": 0.55, "profanity": 0.55})


# -- what must never fire, what must ---------------------------------------------------------------

#: innocent look-alikes, none of them in the training data
LOOKALIKES = [
    "시발점",
    "시발점이 어디예요?",
    "이 노선 시발점은 시청 앞이에요",
    "18세",
    "18세 이상만 신청할 수 있나요",
    "18세기 한옥이요",
    "우리 딸이 18살이에요",
    "개나리",
    "개나리 핀 산책로",
    "개가 새끼를 낳았다",
    "우리 개가 어제 새끼를 낳았어요",
    "고양이가 새끼를 다섯 마리 낳았어요",
    "새끼손가락이 문에 끼었어요",
    "새끼 강아지 등록하려고요",
    "전염병 때문에 문 닫았나요",
    "감염병 예방 수칙 안내해 주세요",
    "세금 폭탄이라는 기사 봤는데요",
    "몸조심하세요 선생님",
    "조심해서 가세요",
    "지시 발령이 났나요",
    "개 같은 경우는 목줄을 해야 돼요",
    "불이 꺼져 있던데요",
    "애가 하도 졸라서요",
    "시바견 산책시키다가 다쳤어요",
    "이 년 동안 살았어요",
    "가슴이 답답하네요",
]

#: angry but clean: anger, escalation, legal action, none of it abuse (none in the training data)
ANGRY_BUT_CLEAN = [
    "너무 답답하네요, 왜 처리가 안 돼요?",
    "도대체 몇 번을 전화해야 해결이 되는 거예요",
    "이건 진짜 말도 안 되는 처리예요 책임자 연결해 주세요",
    "지금 장난하시는 거예요? 서류를 세 번이나 냈다고요",
    "화가 나서 못 참겠어요 감사실에 민원 넣을게요",
    "변호사랑 상의해서 소송할 겁니다",
    "이렇게 일하시면 안 되죠 공무원이면 공무원답게 하세요",
    "왜 전화를 안 받으세요? 오전 내내 걸었어요",
    "너무 화가 나네요 정말 어이가 없어요",
    "짜증 나요 진짜 주차 단속을 왜 우리 골목에서만 해요",
    "제가 지금 소리 지르는 거 아니잖아요 설명을 해 달라고요",
    "미치겠네요 진짜 애가 아픈데 예약이 안 된다니",
    "내일 구청에 직접 찾아가서 따질 거예요",
]

ABUSIVE = [
    ("씨발 언제까지 기다려야 되냐고", "profanity"),
    ("아 ㅅㅂ 또 안 된대", "profanity"),
    ("존나 느리네 일 처리", "profanity"),
    ("너 이 병신아 그것도 못 해?", "insult"),
    ("이 개 새끼야 전화 끊지 마", "insult"),
    ("멍청한 년이 뭘 안다고", "insult"),
    ("퇴근길 조심해라", "threat"),
    ("불 질러 버릴 거야", "threat"),
    ("찾아가서 가만 안 둔다 너", "threat"),
    ("목소리 예쁜데 몇 살이야", "sexual_harassment"),
    ("아가씨 애인 있어? 퇴근하고 만나자", "sexual_harassment"),
]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_lookalikes_never_fire(classifier: AbuseClassifier, text: str) -> None:
    verdict = classifier.classify(text)
    assert not verdict.abusive, verdict


@pytest.mark.parametrize("text", ANGRY_BUT_CLEAN)
def test_angry_but_clean_never_fires(classifier: AbuseClassifier, text: str) -> None:
    verdict = classifier.classify(text)
    assert not verdict.abusive, verdict


@pytest.mark.parametrize(("text", "category"), ABUSIVE)
def test_abuse_fires_with_its_category(classifier: AbuseClassifier, text: str, category: str) -> None:
    verdict = classifier.classify(text)
    assert verdict.abusive and verdict.category == category, verdict
    assert 0.0 <= verdict.score <= 1.0


def test_shipped_phone_lookalikes_and_angry_sentences_never_fire(classifier: AbuseClassifier) -> None:
    rows = [s for s in shipped_samples() if s.source == PHONE_FILE and s.label == "none"]
    fired = [v for v in classifier.classify_many([s.text for s in rows]) if v.abusive]
    assert not fired, "\n".join(f"{v.score:.2f} {v.text}" for v in fired)


def test_threshold_is_a_parameter(classifier: AbuseClassifier) -> None:
    text = "목소리 예쁜데 몇 살이야"
    score = classifier.classify(text).score
    assert classifier.classify(text, threshold=score).abusive
    assert not classifier.classify(text, threshold=min(1.0, score + 1e-6)).abusive or score == 1.0
    assert classifier.classify("", threshold=0.5).score == 0.0


# -- the cache -------------------------------------------------------------------------------------

def _small_data(root: Path, rows: int = 120) -> Path:
    """A copy of the shipped data with ``rows`` lines per file: trains in a second."""
    for name in TRAINING_FILES:
        src, dst = DATA_DIR / name, root / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        with src.open(encoding="utf-8", newline="") as f:
            lines = [line for _, line in zip(range(rows), f, strict=False)]
        if name == PHONE_FILE:
            lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
        dst.write_text("".join(lines), encoding="utf-8", newline="")
    return root


def test_cache_is_reused_and_invalidated_when_the_data_changes(tmp_path: Path) -> None:
    data = _small_data(tmp_path / "data")
    cache = tmp_path / "cache"
    first = load_or_train(cache, data)
    assert first.trained and first.path.exists() and first.model.version in first.path.name
    again = load_or_train(cache, data)
    assert not again.trained and again.path == first.path
    assert again.model.predict_proba(["씨발"]) == first.model.predict_proba(["씨발"])
    # new data: a new version, another file, trained again
    with (data / PHONE_FILE).open("a", encoding="utf-8") as f:
        f.write("새로 추가한 문장입니다\tnone\n")
    changed = load_or_train(cache, data)
    assert changed.trained and changed.path != first.path
    assert sorted(cache.iterdir()) == [changed.path]  # the old version is removed
    assert changed.model.data_hashes == data_hashes(data) != first.model.data_hashes


def test_cache_with_other_data_hashes_is_refused(tmp_path: Path) -> None:
    data = _small_data(tmp_path / "data")
    cache = tmp_path / "cache"
    first = load_or_train(cache, data)
    stored = joblib.load(first.path)
    stored["data_hashes"] = {**stored["data_hashes"], PHONE_FILE: "0" * 64}
    joblib.dump(stored, first.path)
    with pytest.raises(CacheMismatch, match="hashes differ"):
        load_cached(first.path, first.model.version, data_hashes(data))
    assert load_or_train(cache, data).trained  # refused, trained again, cached again
    assert not load_or_train(cache, data).trained
    first.path.write_bytes(b"not a pickle")
    with pytest.raises(CacheMismatch, match="cannot load"):
        load_cached(first.path, first.model.version, data_hashes(data))


def test_training_is_deterministic(tmp_path: Path) -> None:
    data = _small_data(tmp_path / "data")
    a = load_or_train(tmp_path / "a", data)
    b = load_or_train(tmp_path / "b", data)
    texts = ["씨발 진짜", "감사합니다", "퇴근길 조심해라"]
    assert a.model.version == b.model.version == model_version(data_hashes(data))
    assert a.model.predict_proba(texts) == b.model.predict_proba(texts)


def test_the_shipped_model_is_cached_under_its_version(loaded: Loaded, tmp_path: Path) -> None:
    assert loaded.model.version == model_version(data_hashes())
    copy = tmp_path / loaded.path.name
    shutil.copy(loaded.path, copy)
    assert load_cached(copy, loaded.model.version, data_hashes()).version == loaded.model.version
