"""Phone number normalisation: Korean national format <-> E.164 (b2bua.routing.numbers)."""

from __future__ import annotations

import pytest

from b2bua.routing.numbers import (
    INTERNATIONAL_PREFIXES,
    digits,
    format_national,
    same_number,
    to_e164,
    to_national,
    variants,
)

# --------------------------------------------------------------------------------------------- digits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01012345678", "01012345678"),
        ("010-1234-5678", "01012345678"),
        ("010.1234.5678", "01012345678"),
        ("010 1234 5678", "01012345678"),
        ("(02) 2133-1234", "0221331234"),
        ("  02-2133-1234  ", "0221331234"),
        ("+82 10 1234 5678", "+821012345678"),
        ("+82-10-1234-5678", "+821012345678"),
        ("(+82) 10-1234-5678", "+821012345678"),
        ("%2B821012345678", "+821012345678"),
        ("%2b821012345678", "+821012345678"),
        ("%2B82%2D10%2D1234%2D5678", "+821012345678"),
        ("%2b82%2d10%2d1234%2d5678", "+821012345678"),
        ("010%201234%205678", "01012345678"),
        ("*23#", "*23#"),
        ("%2A23%23", "*23#"),
        ("#31#010-1234-5678", "#31#01012345678"),
        ("1234", "1234"),
        ("120", "120"),
    ],
)
def test_digits(text: str, expected: str) -> None:
    assert digits(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no digits"),
        ("   ", "no digits"),
        ("-.()", "no digits"),
        ("+", "no digits after '+'"),
        ("%2B", "no digits after '+'"),
        ("abc", "invalid character 'a'"),
        ("010-1234-567O", "invalid character 'O'"),
        ("82+1012345678", "'+' is only allowed at the start"),
        ("++821012345678", "'+' is only allowed at the start"),
        ("010_1234_5678", "invalid character '_'"),
        ("010/1234/5678", "invalid character '/'"),
        ("010\t1234", "invalid character '\\t'"),
        ("010\r\n1234", "invalid character '\\r'"),
        ("０１０１２３４５６７８", "invalid character '０'"),  # full-width digits are not ASCII
        ("tel:+82-10-1234-5678", "without scheme, host or ';' parameters"),
        ("+82-2-2133-1234;phone-context=seoul.go.kr", "without scheme, host or ';' parameters"),
        ("01012345678@city.example", "without scheme, host or ';' parameters"),
        ("%ZZ010", "invalid character '%'"),
        ("%252B8210", "invalid character '%'"),  # escapes are decoded once
    ],
)
def test_digits_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        digits(text)
    assert message in str(err.value)
    assert repr(text) in str(err.value)


def test_digits_type() -> None:
    with pytest.raises(TypeError):
        digits(1012345678)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------- to_e164

#: (input, E.164 or short result, national, display)
KOREAN = [
    # Seoul 02: 8- and 7-digit subscribers
    ("02-2133-1234", "+82221331234", "0221331234", "02-2133-1234"),
    ("02-312-3456", "+8223123456", "023123456", "02-312-3456"),
    ("(02) 2133-1234", "+82221331234", "0221331234", "02-2133-1234"),
    # every other area code, 7 and 8 digits
    ("031-234-5678", "+82312345678", "0312345678", "031-234-5678"),
    ("031-8123-4567", "+823181234567", "03181234567", "031-8123-4567"),
    ("032-440-2114", "+82324402114", "0324402114", "032-440-2114"),
    ("033-249-2114", "+82332492114", "0332492114", "033-249-2114"),
    ("041-635-2114", "+82416352114", "0416352114", "041-635-2114"),
    ("042-270-2114", "+82422702114", "0422702114", "042-270-2114"),
    ("043-220-2114", "+82432202114", "0432202114", "043-220-2114"),
    ("044-300-2114", "+82443002114", "0443002114", "044-300-2114"),
    ("051-888-1234", "+82518881234", "0518881234", "051-888-1234"),
    ("052-229-2114", "+82522292114", "0522292114", "052-229-2114"),
    ("053-803-2114", "+82538032114", "0538032114", "053-803-2114"),
    ("054-880-2114", "+82548802114", "0548802114", "054-880-2114"),
    ("055-211-2114", "+82552112114", "0552112114", "055-211-2114"),
    ("061-286-2114", "+82612862114", "0612862114", "061-286-2114"),
    ("062-613-2114", "+82626132114", "0626132114", "062-613-2114"),
    ("063-280-2114", "+82632802114", "0632802114", "063-280-2114"),
    ("064-710-2114", "+82647102114", "0647102114", "064-710-2114"),
    ("064-7102-1140", "+826471021140", "06471021140", "064-7102-1140"),
    # area code + service number
    ("02-120", "+822120", "02120", "02-120"),
    ("02-1330", "+8221330", "021330", "02-1330"),
    ("031-120", "+8231120", "031120", "031-120"),
    # mobiles
    ("010-1234-5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("01012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("011-234-5678", "+82112345678", "0112345678", "011-234-5678"),
    ("011-9234-5678", "+821192345678", "01192345678", "011-9234-5678"),
    ("016-123-4567", "+82161234567", "0161234567", "016-123-4567"),
    ("017-1234-5678", "+821712345678", "01712345678", "017-1234-5678"),
    ("018-123-4567", "+82181234567", "0181234567", "018-123-4567"),
    ("019-1234-5678", "+821912345678", "01912345678", "019-1234-5678"),
    # internet phone, personal numbers, free phone, premium
    ("070-1234-5678", "+827012345678", "07012345678", "070-1234-5678"),
    ("0505-123-4567", "+825051234567", "05051234567", "0505-123-4567"),
    ("0504-1234-5678", "+8250412345678", "050412345678", "0504-1234-5678"),
    ("0502-123-4567", "+825021234567", "05021234567", "0502-123-4567"),
    ("0508-1234-5678", "+8250812345678", "050812345678", "0508-1234-5678"),
    ("080-123-4567", "+82801234567", "0801234567", "080-123-4567"),
    ("080-1234-5678", "+828012345678", "08012345678", "080-1234-5678"),
    ("060-700-1234", "+82607001234", "0607001234", "060-700-1234"),
    # E.164 in, all spellings
    ("+82221331234", "+82221331234", "0221331234", "02-2133-1234"),
    ("+82 2 2133 1234", "+82221331234", "0221331234", "02-2133-1234"),
    ("+82-10-1234-5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("+82 10 1234 5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("+82.10.1234.5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("%2B821012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("%2B82-10-1234-5678", "+821012345678", "01012345678", "010-1234-5678"),
    # the trunk 0 kept after +82 by mistake
    ("+82 (0)10 1234 5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("+82-010-1234-5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("+82 (0)2 2133 1234", "+82221331234", "0221331234", "02-2133-1234"),
    # 82 without +
    ("821012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("82-10-1234-5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("82221331234", "+82221331234", "0221331234", "02-2133-1234"),
    ("8201012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("8215881234", "+8215881234", "15881234", "1588-1234"),
    # international prefixes before 82
    ("0082-10-1234-5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("0082 10 1234 5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("00821012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("0082-2-2133-1234", "+82221331234", "0221331234", "02-2133-1234"),  # not carrier 008 + +222 (Mauritania)
    ("001-82-10-1234-5678", "+821012345678", "01012345678", "010-1234-5678"),
    ("002-82-2-2133-1234", "+82221331234", "0221331234", "02-2133-1234"),
    ("005821012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("006821012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("008821012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("00700821012345678", "+821012345678", "01012345678", "010-1234-5678"),
    ("0082-010-1234-5678", "+821012345678", "01012345678", "010-1234-5678"),
    # nationwide numbers: E.164 stays E.164, the national form has no trunk 0
    ("+82 1588 1234", "+8215881234", "15881234", "1588-1234"),
    ("+82 1644 1234", "+8216441234", "16441234", "1644-1234"),
    ("+82-1899-1234", "+8218991234", "18991234", "1899-1234"),
    ("0082-1588-1234", "+8215881234", "15881234", "1588-1234"),
]


#: Returned without a country code: (input, to_e164 == to_national, display)
SHORT = [
    ("112", "112", "112"),
    ("119", "119", "119"),
    ("120", "120", "120"),
    ("114", "114", "114"),
    ("1330", "1330", "1330"),
    ("1234", "1234", "1234"),
    ("51234", "51234", "51234"),
    ("82112", "82112", "82112"),  # an extension, not +82 112
    ("1588-1234", "15881234", "1588-1234"),
    ("15881234", "15881234", "1588-1234"),
    ("1644 1234", "16441234", "1644-1234"),
    ("1899.1234", "18991234", "1899-1234"),
    ("2133-1234", "21331234", "2133-1234"),  # local number, area not guessed
    ("312-3456", "3123456", "312-3456"),
    ("*23#", "*23#", "*23#"),
    ("#31#", "#31#", "#31#"),
    ("*23#010-1234-5678", "*23#01012345678", "*23#01012345678"),
]

#: Foreign numbers: (input, E.164, national with the default 001, display)
FOREIGN = [
    ("+1 415 555 0100", "+14155550100", "00114155550100", "00114155550100"),
    ("+1-212-555-0100", "+12125550100", "00112125550100", "00112125550100"),
    ("+81 3 1234 5678", "+81312345678", "00181312345678", "00181312345678"),
    ("+86 138 1234 5678", "+8613812345678", "0018613812345678", "0018613812345678"),
    ("+44 20 7946 0000", "+442079460000", "001442079460000", "001442079460000"),
    ("+683 4002", "+6834002", "0016834002", "0016834002"),  # Niue: 7 digits in all
    ("+883 5100 0000 0000", "+883510000000000", "001883510000000000", "001883510000000000"),  # 15 digits
    ("%2B14155550100", "+14155550100", "00114155550100", "00114155550100"),
    # carrier prefixes
    ("001-1-415-555-0100", "+14155550100", "00114155550100", "00114155550100"),  # not 00 + +1 14155550100
    # the longest prefix beats 00 + 212 (Morocco) 1255550100
    ("002-1-212-555-0100", "+12125550100", "00112125550100", "00112125550100"),
    ("00700-81-3-1234-5678", "+81312345678", "00181312345678", "00181312345678"),
    ("005-86-138-1234-5678", "+8613812345678", "0018613812345678", "0018613812345678"),
    ("00186 138 1234 5678", "+8613812345678", "0018613812345678", "0018613812345678"),
    # plain 00 where no carrier prefix matches
    ("0044 20 7946 0000", "+442079460000", "001442079460000", "001442079460000"),
    ("0049 30 1234567", "+49301234567", "00149301234567", "00149301234567"),
    # documented ambiguity: 008 is a carrier, so 0086... is 008 + +6...
    ("0086 138 1234 5678", "+613812345678", "001613812345678", "001613812345678"),
]


@pytest.mark.parametrize(("number", "e164", "national", "display"), KOREAN)
def test_korean(number: str, e164: str, national: str, display: str) -> None:
    assert to_e164(number) == e164
    assert to_national(number) == national
    assert format_national(number) == display


@pytest.mark.parametrize(("number", "expected", "display"), SHORT)
def test_short_numbers_unchanged(number: str, expected: str, display: str) -> None:
    assert to_e164(number) == expected
    assert to_national(number) == expected
    assert format_national(number) == display


@pytest.mark.parametrize(("number", "e164", "national", "display"), FOREIGN)
def test_foreign(number: str, e164: str, national: str, display: str) -> None:
    assert to_e164(number) == e164
    assert to_national(number) == national
    assert format_national(number) == display


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("001", "00114155550100"), ("002", "00214155550100"), ("00700", "0070014155550100"),
     ("00", "0014155550100"), ("+", "+14155550100")],
)
def test_to_national_international_prefix(prefix: str, expected: str) -> None:
    assert to_national("+14155550100", international_prefix=prefix) == expected
    assert to_national("+821012345678", international_prefix=prefix) == "01012345678"


@pytest.mark.parametrize("prefix", ["", "0x", "+00", "００１"])
def test_to_national_bad_international_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="international prefix must be digits or '\\+'"):
        to_national("+14155550100", international_prefix=prefix)


def test_international_prefixes_parameter() -> None:
    # only plain 00: 0086 is China
    assert to_e164("0086 138 1234 5678", international_prefixes=("00",)) == "+8613812345678"
    # only 001: a number starting 002 is not international
    with pytest.raises(ValueError):
        to_e164("002-1-212-555-0100", international_prefixes=("001",))
    assert "00700" in INTERNATIONAL_PREFIXES and "00" in INTERNATIONAL_PREFIXES


def test_other_home_country() -> None:
    assert to_e164("020 7946 0000", country="44") == "+442079460000"
    assert to_national("+442079460000", country="44") == "02079460000"
    assert to_national("+821012345678", country="44") == "001821012345678"
    assert to_e164("+821012345678", country="44") == "+821012345678"  # +82 is still checked
    assert to_e164("1234", country="44") == "1234"
    with pytest.raises(ValueError, match="trunk prefix 0 and then a digit 1-9"):
        to_e164("00", country="44", international_prefixes=())
    with pytest.raises(ValueError, match="7 to 15 digits"):
        to_e164("0123", country="44")


@pytest.mark.parametrize("country", ["", "0", "082", "1234", "+82", "８２"])
def test_bad_country(country: str) -> None:
    with pytest.raises(ValueError, match="country code must be 1-3 digits"):
        to_e164("010-1234-5678", country=country)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        # wrong lengths
        ("010-1234-567", "010 mobile numbers have 8 digits after 010, not 7"),
        ("010-1234-56789", "010 mobile numbers have 8 digits after 010, not 9"),
        ("011-12-3456", "011 mobile numbers have 7 or 8 digits after 011, not 6"),
        ("070-123-4567", "070 numbers have 8 digits after 070, not 7"),
        ("0505-12-3456", "0505 numbers have 7 or 8 digits after 0505, not 6"),
        ("080-12-3456", "080 numbers have 7 or 8 digits after 080, not 6"),
        ("02-2133-12345", "area code 02 takes a 7- or 8-digit subscriber number"),
        ("02-213-123", "area code 02 takes a 7- or 8-digit subscriber number"),
        ("031-12", "area code 031 takes a 7- or 8-digit subscriber number"),
        # subscriber numbers do not start with 0 or 1
        ("02-123-4567", "starting with 2-9"),
        ("02-0123-4567", "starting with 2-9"),
        ("02-12345", "1XX/1XXX service number"),
        # unknown prefixes
        ("034-123-4567", "no Korean area or service code 034"),
        ("065-123-4567", "no Korean area or service code 065"),
        ("090-1234-5678", "no Korean area or service code 090"),
        ("030-1234-5678", "no Korean area or service code 030"),
        ("0501-123-4567", "no Korean area or service code 050"),
        ("012-1234-5678", "no Korean numbers start with 012"),
        ("013-1234-5678", "no Korean numbers start with 013"),
        ("0", "nothing after the trunk prefix 0"),
        # nationwide numbers with a trunk 0
        ("01588-1234", "15XX/16XX/18XX numbers are dialled without a leading 0"),
        # E.164
        ("+0821012345678", "a country code cannot start with 0"),
        ("+82", "no number after the country code 82"),
        ("+82 112", "011 mobile numbers have 7 or 8 digits"),
        ("+82 0", "no number after the country code 82"),
        ("+82 00 10 1234 5678", "more than one trunk prefix 0"),
        ("+82 10 1234 567", "010 mobile numbers have 8 digits"),
        ("+1 415 555 010", "+1 (NANP) numbers have 10 digits"),
        ("+1 115 555 0100", "+1 (NANP) numbers have 10 digits"),
        ("+1 415 155 0100", "+1 (NANP) numbers have 10 digits"),
        ("+49 123", "E.164 numbers have 7 to 15 digits, not 5"),
        ("+210 1234567", "+210... does not start with an assigned country code"),
        ("+999 1234567", "+999... does not start with an assigned country code"),
        ("+28 1234567", "+281... does not start with an assigned country code"),
        ("+49 1234 5678 9012 345", "E.164 numbers have 7 to 15 digits, not 17"),
        ("+82*10", "E.164 numbers cannot contain '*' or '#'"),
        ("+82#10", "E.164 numbers cannot contain '*' or '#'"),
        # international prefix with nothing valid after it
        ("00", "is not a valid international number"),
        ("001", "is not a valid international number"),
        ("0082-12-345", "is not a valid international number"),
        ("0082-10-1234-567", "as 008 + 2101234567: +210... does not start with an assigned country code; "
                             "as 00 + 82101234567: 010 mobile numbers have 8 digits after 010, not 7"),
        # 82 without + that is not Korean
        ("82-12-3456-7890", "starts with 82 but is not a Korean E.164 number"),
        ("82-10-1234-567", "starts with 82 but is not a Korean E.164 number"),
        # too long to be short, no prefix
        ("123456789", "has 9 digits but no trunk 0, '+' or international prefix"),
        ("14155550100", "has 11 digits but no trunk 0, '+' or international prefix"),
        ("1012345678", "has 10 digits but no trunk 0"),
        # lexical errors come through
        ("010-abcd-5678", "invalid character 'a'"),
        ("", "no digits"),
    ],
)
def test_to_e164_rejects(number: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        to_e164(number)
    assert message in str(err.value)
    assert repr(number) in str(err.value)
    for other in (to_national, format_national, variants):
        with pytest.raises(ValueError):
            other(number)


# ----------------------------------------------------------------------------------------- round trips

ROUND_TRIP = sorted({national for _, _, national, _ in KOREAN if national.startswith("0")})


@pytest.mark.parametrize("national", ROUND_TRIP)
def test_round_trip_national_e164_national(national: str) -> None:
    e164 = to_e164(national)
    assert e164.startswith("+82")
    assert to_national(e164) == national
    assert to_e164(to_national(e164)) == e164
    assert to_e164(format_national(e164)) == e164
    assert to_national(format_national(national)) == national
    assert to_e164(e164) == e164  # idempotent


@pytest.mark.parametrize("nationwide", ["15881234", "16441234", "18991234"])
def test_round_trip_nationwide(nationwide: str) -> None:
    assert to_e164(nationwide) == nationwide  # not E.164-routable: no country code added
    assert to_national("+82" + nationwide) == nationwide
    assert to_e164("+82" + nationwide) == "+82" + nationwide
    assert same_number(nationwide, "+82" + nationwide)


@pytest.mark.parametrize("e164", sorted({e for _, e, _, _ in FOREIGN}))
def test_round_trip_foreign(e164: str) -> None:
    for prefix in ("001", "002", "005", "00700", "+"):
        assert to_e164(to_national(e164, prefix)) == e164


@pytest.mark.parametrize("number", [n for n, _, _ in SHORT])
def test_short_round_trip(number: str) -> None:
    short = to_e164(number)
    assert to_e164(short) == short == to_national(short)
    assert to_e164(format_national(short)) == short


# --------------------------------------------------------------------------------------------- variants


def test_variants_mobile() -> None:
    v = variants("010-1234-5678")
    for spelling in [
        "01012345678", "010-1234-5678", "010 1234 5678", "010.1234.5678", "(010) 1234-5678",
        "+821012345678", "821012345678", "%2B821012345678", "%2b821012345678",
        "+82-10-1234-5678", "+82 10 1234 5678", "+82.10.1234.5678", "%2B82-10-1234-5678",
        "+82 (0)10 1234 5678", "+82-010-1234-5678",
        "0082-10-1234-5678", "0082 10 1234 5678", "00821012345678",
        "001821012345678", "002821012345678", "005821012345678", "006821012345678",
        "008821012345678", "00700821012345678",
    ]:
        assert spelling in v, spelling
    assert "1012345678" not in v  # the bare NSN is not a number on its own
    assert variants("+821012345678") == v == variants("0082 10 1234 5678")


def test_variants_seoul() -> None:
    v = variants("02-2133-1234")
    assert {"0221331234", "02-2133-1234", "02 2133 1234", "(02) 2133-1234", "(02)2133-1234",
            "+82221331234", "82221331234", "%2B82221331234", "+82-2-2133-1234", "+82 2 2133 1234",
            "+82 (0)2 2133 1234", "0082-2-2133-1234"} <= v


def test_variants_nationwide() -> None:
    v = variants("1588-1234")
    assert {"15881234", "1588-1234", "1588 1234", "+8215881234", "8215881234", "%2B8215881234",
            "+82-1588-1234", "0082-1588-1234"} <= v
    assert not any(s.startswith("0158") or "(0)" in s for s in v)  # never a trunk 0
    assert v == variants("+82 1588 1234")


def test_variants_service_through_area_code() -> None:
    v = variants("02-120")
    assert {"02120", "02-120", "+822120", "+82-2-120", "0082-2-120"} <= v
    assert "822120" not in v  # 6 digits: an extension, not +82 2 120


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("120", {"120"}),
        ("1234", {"1234"}),
        ("*23#", {"*23#"}),
        ("2133-1234", {"21331234", "2133-1234", "2133 1234"}),
    ],
)
def test_variants_short(number: str, expected: set[str]) -> None:
    assert variants(number) == expected


def test_variants_foreign() -> None:
    v = variants("+1 415 555 0100")
    assert {"+14155550100", "%2B14155550100", "%2b14155550100", "00114155550100", "00214155550100",
            "0070014155550100"} <= v
    assert "14155550100" not in v  # without + or prefix it is not a number
    assert "0014155550100" not in v  # reads as 001 + +4155550100


@pytest.mark.parametrize("number", [n for n, *_ in KOREAN + FOREIGN] + [n for n, *_ in SHORT])
def test_every_variant_is_the_same_number(number: str) -> None:
    v = variants(number)
    assert v
    for spelling in v:
        assert same_number(spelling, number), spelling
        assert to_national(spelling) == to_national(number), spelling


def test_variants_find_a_number_in_captured_bytes() -> None:
    """The use the function is for: a personal number must not leak in any spelling."""
    personal = variants("010-9876-5432")
    clean = b"INVITE sip:1234@city.example SIP/2.0\r\nFrom: <sip:021331234@city.example>;tag=1\r\n"
    leaky = clean + b"P-Asserted-Identity: <sip:%2B82-10-9876-5432@carrier.example;user=phone>\r\n"
    assert not any(s.encode() in clean for s in personal)
    assert any(s.encode() in leaky for s in personal)
    assert any(s.encode() in b"Contact: <tel:+82.10.9876.5432>" for s in personal)


# ------------------------------------------------------------------------------------------ same_number


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("010-1234-5678", "+821012345678", True),
        ("01012345678", "%2B82-10-1234-5678", True),
        ("0082 10 1234 5678", "821012345678", True),
        ("+82 (0)2 2133 1234", "(02) 2133-1234", True),
        ("1588-1234", "+82 1588 1234", True),
        ("1588-1234", "8215881234", True),
        ("120", "120", True),
        ("+14155550100", "001-1-415-555-0100", True),
        ("+14155550100", "00700 1 415 555 0100", True),
        ("010-1234-5678", "010-1234-5679", False),
        ("02-2133-1234", "2133-1234", False),  # the area code is not guessed
        ("02-120", "120", False),
        ("031-234-5678", "032-234-5678", False),
        ("+14155550100", "+4155550100", False),
        ("1234", "12345", False),
    ],
)
def test_same_number(a: str, b: str, same: bool) -> None:
    assert same_number(a, b) is same
    assert same_number(b, a) is same


@pytest.mark.parametrize(("a", "b"), [("anonymous", "010-1234-5678"), ("010-1234-5678", "010-12")])
def test_same_number_rejects(a: str, b: str) -> None:
    with pytest.raises(ValueError):
        same_number(a, b)


# ------------------------------------------------------------------------ cross-check (test extra)


@pytest.mark.parametrize(
    "national", ["02-2133-1234", "010-1234-5678", "031-8123-4567", "070-1234-5678", "051-888-1234"]
)
def test_agrees_with_phonenumbers(national: str) -> None:
    import phonenumbers  # the test extra: the Korean plan checked against libphonenumber's

    parsed = phonenumbers.parse(national, "KR")
    assert to_e164(national) == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    assert to_e164(to_e164(national)) == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
