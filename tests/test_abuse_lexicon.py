"""Abuse lexicon: normalisation (jamo, spacing, repeats, evasions), matching, look-alikes, file:line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from b2bua.abuse.lexicon import Lexicon, load_lexicon
from b2bua.abuse.normalize import model_text, skeleton
from b2bua.yamlconf import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "abuse_lexicon.yaml"


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return load_lexicon(SHIPPED)


# -- normalisation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["씨발", "시발", "씨빨", "씌발", "씨이발", "씨이이이발", "씨.발", "씨 발",
                                     "씨!!발", "  씨발  ", "ㅆㅣ발"])
def test_spelling_spacing_and_repeats_fold_to_one_key(variant: str) -> None:
    assert skeleton(variant) == skeleton("시발")


def test_letters_repeated_more_than_twice_are_cut_to_two() -> None:
    assert skeleton("씨발발발발") == skeleton("씨발발")
    assert model_text("ㅋㅋㅋㅋㅋ 하하") == model_text("ㅋㅋ 하하") != model_text("ㅋ 하하")
    assert skeleton("뽀뽀해") != skeleton("양보해")[len(skeleton("양")):]  # a doubled syllable stays doubled


def test_jamo_decomposition_keeps_initials_and_finals_apart() -> None:
    # ㅅㅂ typed as letters are two initials; 웃반 has a final ㅅ then an initial ㅂ: not the same sequence
    assert skeleton("ㅅㅂ") == "\u1109\u1107"
    assert "\u1109\u1107" not in skeleton("웃반")
    assert skeleton("시") == "\u1109\u1175"  # a syllable is its initial and vowel (conjoining jamo)
    assert skeleton("좇") != skeleton("좆")  # finals are never folded


def test_vowels_spoken_alike_fold_but_aspirates_do_not() -> None:
    assert skeleton("개새끼") == skeleton("게세기") == skeleton("개섀끼".replace("섀", "새"))
    assert skeleton("미친") != skeleton("미진")


def test_one_letter_words_are_joined_other_spaces_stay() -> None:
    assert skeleton("ㅅ ㅂ") == skeleton("ㅅㅂ")
    assert skeleton("개 새 끼") == skeleton("개새끼")
    assert skeleton("지시 발령").count(" ") == 1  # two real words stay two
    assert model_text("아 씨 발 진짜") == "아씨발 진짜"


def test_full_width_case_and_punctuation() -> None:
    assert skeleton("ＴＬＱＫＦ") == "tlqkf"
    assert model_text("정말!!! 왜 그래요???") == "정말 왜 그래요"
    assert model_text("ㅋㅋㅋㅋㅋ 웃기네") == model_text("ㅋㅋ 웃기네")


# -- the shipped lexicon ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "category"), [
    ("씨발", "profanity"), ("씨 발", "profanity"), ("씨발발발발", "profanity"), ("씨빨", "profanity"),
    ("씨이이발 진짜", "profanity"), ("ㅅㅂ 또 반려야", "profanity"),
    ("ㅅ ㅂ", "profanity"), ("씨8 진짜", "profanity"), ("tlqkf", "profanity"), ("존나 느리네", "profanity"),
    ("ㅂㅅ 같은 소리", "insult"), ("ㅄ", "insult"), ("병신아", "insult"), ("개 새 끼", "insult"),
    ("이 새끼가", "insult"), ("미친놈", "insult"), ("미친 놈", "insult"),
    ("퇴근길 조심해라", "threat"), ("불 질러 버릴 거야", "threat"), ("죽여버릴 거야", "threat"),
    ("가만 안 둬", "threat"), ("밤길조심해", "threat"),
    ("목소리 예쁜데 몇 살이야", "sexual_harassment"), ("속옷 무슨 색이야", "sexual_harassment"),
])
def test_entries_and_evasions_match(lexicon: Lexicon, text: str, category: str) -> None:
    hits = lexicon.match(text)
    assert hits and hits[0].category == category, (text, hits)


LOOKALIKES = [
    "시발점", "버스 시발점이 어디예요", "시발역", "18세 미만", "18세기 건물", "18살", "이번 달 18일", "개나리",
    "개나리가 피었어요", "개가 새끼를 낳았다", "우리 개가 새끼를 낳았어요", "새끼손가락을 다쳤어요", "새끼 고양이",
    "지시 발령", "전염병 예방접종", "감염병 신고", "세금 폭탄 맞았어요", "몸조심하세요", "조심해서 들어가세요",
    "불이 꺼져 있어요", "가슴이 답답해요", "쓰레기 수거가 안 돼요", "보지 마세요", "애가 졸라서요", "시바견",
    "개 같은 경우에는 등록해야 돼요", "이 년 동안 기다렸어요", "웃반", "좇아가다", "미진한 부분",
]


@pytest.mark.parametrize("text", LOOKALIKES)
def test_innocent_lookalikes_match_nothing(lexicon: Lexicon, text: str) -> None:
    assert lexicon.match(text) == [], text


def test_the_model_reads_the_utterance_without_its_lookalikes(lexicon: Lexicon) -> None:
    assert lexicon.model_view("시발점이 어디예요?") == "이 어디예요"
    assert "새끼" not in lexicon.model_view("개가 새끼를 낳았다")
    assert lexicon.model_view("씨발 시발점") == "씨발"


def test_lexicon_scores_take_the_strongest_entry_per_category(lexicon: Lexicon) -> None:
    scores = lexicon.scores("씨발 퇴근길 조심해라")
    assert scores["profanity"] >= 0.9 and scores["threat"] >= 0.9 and scores["insult"] == 0.0


# -- broken files ----------------------------------------------------------------------------------

def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "abuse_lexicon.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_lexicon(path)
    for p in info.value.problems:
        assert re.match(re.escape(str(path)) + r":\d+: ", p), p
    return info.value.problems


def _line(problem: str) -> int:
    return int(problem.split(":")[1])


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    [p] = _problems(tmp_path, "categories:\n  profanity:\n    entries: [씨발\n")
    assert "YAML syntax error" in p


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml:1: file not found"):
        load_lexicon(tmp_path / "nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    [p] = _problems(tmp_path, "- 씨발\n")
    assert _line(p) == 1 and "mapping" in p


def test_unknown_category_and_unknown_key_with_hint(tmp_path: Path) -> None:
    problems = _problems(tmp_path, (
        "categories:\n"
        "  profanity:\n"
        "    entries: [씨발]\n"
        "  slur:\n"
        "    entries: [뭐]\n"
        "  threat:\n"
        "    entires: [죽여]\n"
        "lookalike: [시발점]\n"))
    text = "\n".join(problems)
    # like b2bua/config.py: a mapping's problems point at its first line (yamlconf's line map)
    assert any(_line(p) == 5 and "unknown category 'slur'" in p for p in problems), text
    assert any(_line(p) == 7 and "unknown key 'entires'" in p and "did you mean 'entries'" in p for p in problems), text
    assert any(_line(p) == 7 and "threat: missing required key 'entries'" in p for p in problems), text
    assert any(_line(p) == 8 and "unknown key 'lookalike'" in p and "'lookalikes'" in p for p in problems), text


def test_bad_weight_and_empty_entries(tmp_path: Path) -> None:
    problems = _problems(tmp_path, (
        "categories:\n"
        "  profanity:\n"
        "    weight: 1.5\n"
        "    entries: [씨발]\n"
        "  insult:\n"
        "    entries: []\n"
        "  threat:\n"
        "    entries:\n"
        "      - {term: 죽여 버릴, weight: -1}\n"))
    text = "\n".join(problems)
    assert any(_line(p) == 3 and "profanity.weight" in p and "1.5" in p for p in problems), text
    assert any(_line(p) == 6 and "insult.entries" in p for p in problems), text
    assert any(_line(p) == 9 and "threat.entries.0.weight" in p for p in problems), text


def test_duplicates_blank_entries_and_entries_hidden_by_lookalikes(tmp_path: Path) -> None:
    problems = _problems(tmp_path, (
        "categories:\n"
        "  profanity:\n"
        "    entries:\n"
        "      - 씨발\n"
        "      - 시발\n"
        "      - '!!!'\n"
        "  insult:\n"
        "    entries:\n"
        "      - 시발점이\n"
        "      - 미친 놈\n"
        "      - 미친놈\n"
        "      - 씨발발발\n"
        "lookalikes: [시발점]\n"))
    text = "\n".join(problems)
    assert any(_line(p) == 5 and "'시발' is already in profanity (line 4)" in p for p in problems), text
    assert any(_line(p) == 6 and "no letters" in p for p in problems), text
    assert any(_line(p) == 9 and "covered by a look-alike" in p for p in problems), text
    assert any(_line(p) == 11 and "already in insult (line 10)" in p for p in problems), text
    assert any(_line(p) == 12 and "repeated three times" in p for p in problems), text


def test_an_entry_is_a_string_or_a_term_with_a_weight(tmp_path: Path) -> None:
    problems = _problems(tmp_path, (
        "categories:\n"
        "  profanity:\n"
        "    entries:\n"
        "      - 씨발\n"
        "      - {term: 존나, wieght: 0.5}\n"
        "      - 18\n"
        "lookalikes: [시발점, 3]\n"))
    assert [_line(p) for p in problems] == [5, 6, 7], problems
    assert "unknown key 'wieght' (did you mean 'weight'?)" in problems[0]
    assert "expected a word or phrase, or a mapping {term: ..., weight: ...} (got 18)" in problems[1]
    assert "lookalikes.1" in problems[2]


def test_an_entry_without_its_own_weight_takes_the_category_weight(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.yaml"
    path.write_text("categories:\n  threat:\n    weight: 0.7\n"
                    "    entries: [{term: 죽여 버릴}, {term: 가만 안 둬, weight: 0.4}]\n", encoding="utf-8")
    lexicon = load_lexicon(path)
    assert [(e.term, e.weight) for e in lexicon.entries] == [("죽여 버릴", 0.7), ("가만 안 둬", 0.4)]
    assert lexicon.match("죽여버릴 거야")[0].weight == 0.7


def test_shipped_lexicon_is_valid_and_covers_every_category(lexicon: Lexicon) -> None:
    assert {e.category for e in lexicon.entries} == {"profanity", "insult", "threat", "sexual_harassment"}
    assert len(lexicon.entries) > 200 and len(lexicon.lookalikes) > 30
