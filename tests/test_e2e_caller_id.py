"""Outbound caller ID (issue #6) with real SIPp peers: what the carrier side receives.

The PBX (127.0.0.3), a staff device (127.0.0.4) and the carrier (127.0.0.2) are SIPp instances on
their own loopback addresses; the B2BUA listens on 127.0.0.1. The carrier's SIPp message log holds
every byte it received, and the assertions read it.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from harness import SCENARIOS, B2BUAProcess, free_port, sipp, sipp_background, write_config

from b2bua.routing.numbers import variants

pytestmark = pytest.mark.usefixtures("sipp_installed")

CARRIER, CARRIER_B, PBX, DEVICE_IP = "127.0.0.2", "127.0.0.5", "127.0.0.3", "127.0.0.4"
PERSONAL = "010-9876-5432"
STAFF_NAME = "김민수"
DEVICE = {"username": "staff1001", "password": "s3cret-1001", "department": "교통정책과",
          "caller_id": {"display_name": "서울시 교통정책과 민원팀"}}
LOGO = "https://www.seoul.go.kr/brand/traffic.png"
JCARD = "https://www.seoul.go.kr/brand/traffic.jcard.json"


def _config(tmp: Path, carrier_port: int, carrier_b_port: int, pbx_port: int, *, media: bool = True,
            messenger: dict | None = None, debug: bool = False) -> Path:
    trunks = [
        {"name": "carrier", "kind": "carrier", "addresses": [f"{CARRIER}/32"], "number_format": "e164",
         "gateways": [{"uri": f"sip:{CARRIER}:{carrier_port}"}], "identity_headers": ["pai", "ppi"],
         "forward_headers": ["X-Case-Id", "X-Staff-Mobile"]},
        {"name": "carrier-b", "kind": "carrier", "addresses": [f"{CARRIER_B}/32"], "number_format": "national",
         "gateways": [{"uri": f"sip:{CARRIER_B}:{carrier_b_port}"}], "call_info": False,
         "identity_headers": ["pai", "rpid"]},
        {"name": "pbx", "kind": "pbx", "addresses": [f"{PBX}/32"], "gateways": [{"uri": f"sip:{PBX}:{pbx_port}"}]},
    ]
    routing = {
        "digest_algorithms": ["MD5"],
        "trunks": trunks,
        "routes": [{"name": "mobile", "prefix": "010", "trunks": ["carrier"]},
                   {"name": "seoul", "prefix": "02", "trunks": ["carrier-b"]},
                   {"name": "lab", "prefix": "", "targets": [f"sip:{PBX}:{pbx_port}"]}],
        "departments": [
            {"name": "교통정책과", "display_name": "서울시 교통정책과", "numbers": ["02-2133-2200"], "trunk": "pbx",
             "extension": "2200", "extensions": ["2201-2299"],
             "policy": {"caller_id": {"public_number": "02-2133-2200", "display_name": "서울시 교통정책과",
                                      "logo_url": LOGO, "jcard_url": JCARD, "call_reason": "교통 민원 회신"}}},
            {"name": "총무과", "display_name": "서울시 총무과", "numbers": ["02-2133-5000"], "trunk": "pbx",
             "extension": "5000", "extensions": ["5*"],
             "policy": {"caller_id": {"public_number": "02-2133-5000", "display_name": "서울시 총무과"}}},
        ],
        "devices": [DEVICE],
        "schedules": [],
        "unknown_number": {"status": 404},
    }
    if messenger:
        routing["messenger"] = messenger
    cfg = write_config(tmp / "config", routing=routing, logging={"level": "debug"} if debug else None)
    if not media:
        process = yaml.safe_load(cfg.read_text())
        process["media"]["enabled"] = False
        cfg.write_text(yaml.safe_dump(process, allow_unicode=True))
    return cfg


def _start(tmp: Path, cfg: Path) -> tuple[B2BUAProcess, int]:
    port = free_port()
    return B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp / "b2bua.log").start(), port


def _run(tmp: Path, args: list[str]) -> str:
    res = sipp([*args, "-trace_err", "-timeout", "30", "-timeout_error"], tmp, timeout=60)
    out = res.stdout.decode(errors="replace")
    errors = "".join(p.read_text(errors="replace")[-2000:] for p in tmp.glob("*errors.log"))
    assert res.returncode == 0, out[-2500:] + errors
    return out


def _pbx_call(tmp: Path, port: int, ext: str, number: str, calls: int = 1) -> None:
    _run(tmp, ["-sf", str(SCENARIOS / "uac_pbx_outbound.xml"), f"127.0.0.1:{port}", "-i", PBX,
               "-p", str(free_port(PBX)), "-s", number, "-key", "ext", ext, "-m", str(calls), "-r", "10"])


def _carrier(tmp: Path, host: str, port: int, name: str, check: bool = False) -> list[str]:
    scenario = ["-sf", str(SCENARIOS / "uas_carrier_caller_id.xml")] if check else ["-sn", "uas"]
    return [*scenario, "-i", host, "-p", str(port), "-trace_msg", "-message_file", str(tmp / f"{name}.log"),
            "-trace_err", "-error_file", str(tmp / f"{name}_errors.txt")]


def _pbx_call_to_carrier(tmp: Path, ext: str, number: str, *, carrier_b: bool = False, check: bool = False,
                         calls: int = 1) -> tuple[str, int, str]:
    """PBX extension ``ext`` calls ``number`` through a B2BUA on the test config, carrier (or carrier-b)
    being a SIPp UAS (with ``check``: the scenario that checks what it gets, and its checks passed).
    Returns the carrier's message log, its port and the B2BUA's log."""
    cp, bp, pp = free_port(CARRIER), free_port(CARRIER_B), free_port(PBX)
    host, port, name = (CARRIER_B, bp, "carrier_b") if carrier_b else (CARRIER, cp, "carrier")
    with sipp_background(_carrier(tmp, host, port, name, check), tmp):
        proc, b2bua_port = _start(tmp, _config(tmp, cp, bp, pp))
        try:
            _pbx_call(tmp, b2bua_port, ext, number, calls=calls)
            proc.settle()
        finally:
            proc.stop()
    if check:
        _checks_passed(tmp, name)
    return (tmp / f"{name}.log").read_bytes().decode("utf-8"), port, proc.log()


def _checks_passed(tmp: Path, name: str) -> None:
    """uas_carrier_caller_id.xml's own checks (its <ereg check_it>) found nothing wrong."""
    errors = tmp / f"{name}_errors.txt"
    text = errors.read_text(errors="replace") if errors.exists() else ""
    assert "regexp" not in text.lower(), text[-2000:]


def _invites(log: str) -> list[str]:
    """The INVITE messages in a SIPp message log, each as its text."""
    return re.findall(r"^INVITE sip:.*?(?=^-{10,}|\Z)", log, re.M | re.S)


def _header(msg: str, name: str) -> list[str]:
    return re.findall(rf"^{name}: *(.*?)\r?$", msg, re.M | re.I)


def test_pbx_desk_phone_call_presents_the_department(tmp_path: Path) -> None:
    """Extension 2201 (in 교통정책과's number plan) calls a mobile: the carrier (E.164, PAI + PPI,
    branding on) sees the department's number, name and logo, nothing of the desk phone."""
    raw, cp, b2bua_log = _pbx_call_to_carrier(tmp_path, "2201", "010-1234-5678", check=True, calls=2)
    invites = _invites(raw)
    assert len(invites) == 2, raw[:3000]
    inv = invites[0]
    ours = "127.0.0.1"
    assert inv.startswith(f"INVITE sip:+821012345678@{CARRIER}:{cp} SIP/2.0")
    assert re.match(rf'"서울시 교통정책과" <sip:\+82221332200@{ours};user=phone>;tag=\w+$', _header(inv, "From")[0])
    assert _header(inv, "To") == [f"<sip:+821012345678@{CARRIER}:{cp}>"]
    assert _header(inv, "P-Asserted-Identity") == [f'"서울시 교통정책과" <sip:+82221332200@{ours};user=phone>']
    assert _header(inv, "P-Preferred-Identity") == [f'"서울시 교통정책과" <sip:+82221332200@{ours};user=phone>']
    assert _header(inv, "Privacy") == ["none"]
    assert _header(inv, "Call-Info") == [f'<{LOGO}>;purpose=icon, <{JCARD}>;purpose=jcard;call-reason="교통 민원 회신"']
    assert re.fullmatch(rf"<sip:{ours}:\d+>", _header(inv, "Contact")[0])
    assert re.search(r"^o=- \d+ \d+ IN IP4 127\.0\.0\.1\r?$", inv, re.M)
    assert not _header(inv, "User-Agent") and not _header(inv, "Remote-Party-ID")
    assert not re.search(r"(?<![0-9A-Za-z])2201(?![0-9A-Za-z])", raw)  # the extension (not inside a random id)
    for word in ("Kim", PBX):
        assert word not in raw
    assert b2bua_log.count("end status=200") == 2


def test_national_trunk_without_branding_and_the_plan_prefix(tmp_path: Path) -> None:
    """Extension 5123 matches 총무과's prefix ``5*``; carrier-b wants national numbers, PAI and
    Remote-Party-ID, and no Call-Info."""
    raw, bp, _ = _pbx_call_to_carrier(tmp_path, "5123", "02-3456-7890", carrier_b=True, check=True)
    inv = _invites(raw)[0]
    assert inv.startswith(f"INVITE sip:0234567890@{CARRIER_B}:{bp} SIP/2.0")
    assert _header(inv, "From")[0].startswith('"서울시 총무과" <sip:0221335000@127.0.0.1>;tag=')
    assert _header(inv, "P-Asserted-Identity") == ['"서울시 총무과" <sip:0221335000@127.0.0.1>']
    assert _header(inv, "Remote-Party-ID") == ['"서울시 총무과" <sip:0221335000@127.0.0.1>;party=calling;screen=yes;'
                                               'privacy=off']
    assert not _header(inv, "Call-Info") and not _header(inv, "P-Preferred-Identity")
    assert "5123" not in inv


def test_extension_outside_the_number_plan_calls_anonymously(tmp_path: Path) -> None:
    """No department claims extension 7777: the carrier gets an anonymous From, Privacy: id and
    no asserted identity (never the extension)."""
    raw, _, _ = _pbx_call_to_carrier(tmp_path, "7777", "01012345678")
    inv = _invites(raw)[0]
    assert _header(inv, "From")[0].startswith('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=')
    assert _header(inv, "Privacy") == ["id"]
    assert not _header(inv, "P-Asserted-Identity") and not _header(inv, "Call-Info")
    assert not re.search(r"(?<![0-9A-Za-z])7777(?![0-9A-Za-z])", inv)  # not inside a random id


def test_staff_device_call_presents_its_caller_id(tmp_path: Path) -> None:
    """The staff app registers with digest auth, then calls out with credentials: the carrier sees
    the device's own display name over its department's number, nothing of the device."""
    cp, bp, pp = free_port(CARRIER), free_port(CARRIER_B), free_port(PBX)
    users = tmp_path / "users.csv"
    users.write_text(f"SEQUENTIAL\n{DEVICE['username']};{PERSONAL};{STAFF_NAME};\n")
    with sipp_background(_carrier(tmp_path, CARRIER, cp, "carrier", True), tmp_path):
        proc, port = _start(tmp_path, _config(tmp_path, cp, bp, pp, debug=True))
        try:
            device_port = free_port(DEVICE_IP)
            _run(tmp_path, ["-sf", str(SCENARIOS / "uac_register_auth.xml"), f"127.0.0.1:{port}", "-i", DEVICE_IP,
                            "-p", str(device_port), "-m", "1", "-s", DEVICE["username"], "-au", DEVICE["username"],
                            "-ap", DEVICE["password"]])
            _run(tmp_path, ["-sf", str(SCENARIOS / "uac_device_outbound.xml"), f"127.0.0.1:{port}", "-i", DEVICE_IP,
                            "-p", str(device_port), "-inf", str(users), "-au", DEVICE["username"],
                            "-ap", DEVICE["password"], "-s", "01012345678",
                            "-auth_uri", f"01012345678@127.0.0.1:{port}", "-m", "1"])
            proc.settle()
        finally:
            proc.stop()
    _checks_passed(tmp_path, "carrier")
    raw = (tmp_path / "carrier.log").read_bytes().decode("utf-8")
    inv = _invites(raw)[0]
    assert _header(inv, "From")[0].startswith('"서울시 교통정책과 민원팀" <sip:+82221332200@127.0.0.1;user=phone>;tag=')
    assert _header(inv, "P-Asserted-Identity") == ['"서울시 교통정책과 민원팀" <sip:+82221332200@127.0.0.1;user=phone>']
    assert f"<{LOGO}>;purpose=icon" in _header(inv, "Call-Info")[0]
    for word in (DEVICE["username"], DEVICE_IP, PERSONAL, "98765432", STAFF_NAME, "CityStaffApp", "X-Push-Token"):
        assert word not in raw
    assert proc.log().count("end status=200") == 1
    assert f'"{STAFF_NAME}" <sip:{PERSONAL}@' in proc.log()  # the app did send them


def _leak_rows(n: int) -> list[list[str]]:
    """Per call: 5 spellings that fit in a URI, then 5 of any kind, rotating through all of them."""
    spellings = sorted(variants(PERSONAL)) + ["010-9876-5432", "+82-10-9876-5432"]
    uri_safe = sorted({s for s in spellings if re.fullmatch(r"[-+.%0-9A-Za-z]+", s)} |
                      {quote(s, safe="") for s in spellings} |
                      {"010%2D9876%2D5432", "%30%31%30%39%38%37%36%35%34%33%32"})
    free = sorted(set(spellings) | {quote(s) for s in spellings})
    rows = []
    for i in range(n):
        rows.append([uri_safe[(i * 5 + k) % len(uri_safe)] for k in range(5)] +
                    [free[(i * 5 + k) % len(free)] for k in range(5)])
    return rows


@pytest.mark.parametrize("media", [True, False], ids=["media-anchored", "signalling-only"])
def test_nothing_of_the_staff_member_reaches_the_carrier(tmp_path: Path, media: bool) -> None:
    """24 PBX calls put the personal mobile number (every spelling of ``variants()``, URL-escaped
    too), the extension, the device user and the staff name into every header and SDP line; the
    carrier receives none of them, in any byte. The allow-listed X-Case-Id still goes through,
    the allow-listed X-Staff-Mobile does not (it names the caller)."""
    rows = _leak_rows(24)
    csv = tmp_path / "leaks.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(";".join(r) + ";\n" for r in rows))
    cp, bp, pp = free_port(CARRIER), free_port(CARRIER_B), free_port(PBX)
    with sipp_background(_carrier(tmp_path, CARRIER, cp, "carrier"), tmp_path):
        proc, port = _start(tmp_path, _config(tmp_path, cp, bp, pp, media=media, debug=True))
        try:
            out = _run(tmp_path, ["-sf", str(SCENARIOS / "uac_leaky_pbx.xml"), f"127.0.0.1:{port}", "-i", PBX,
                                  "-p", str(free_port(PBX)), "-mi", "127.0.0.1", "-s", "01012345678",
                                  "-inf", str(csv), "-key", "ext", "2201", "-key", "device", DEVICE["username"],
                                  "-key", "name", STAFF_NAME, "-m", str(len(rows)), "-r", "20"])
            proc.settle()
        finally:
            proc.stop()
    assert re.findall(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)[-1] == str(len(rows))
    data = (tmp_path / "carrier.log").read_bytes()
    text = data.decode("utf-8")
    assert len(_invites(text)) == len(rows)
    # every spelling the calls used, and each of variants() even if no call used it
    forbidden = set(variants(PERSONAL)) | {v for r in rows for v in r} | {
        "98765432", "9876-5432", "9876 5432", "9876.5432", "9876%2D5432", "%39%38%37%36",
        DEVICE["username"], STAFF_NAME, quote(STAFF_NAME), PBX}
    found = {f for f in forbidden if f.encode() in data or f.lower().encode() in data.lower()}
    assert not found, found
    # the test can fail: the PBX side did send all of it (the B2BUA's debug log shows every message)
    received = proc.log_path.read_bytes()
    assert all(v.encode() in received for r in rows for v in r) and STAFF_NAME.encode() in received
    assert not re.search(r"(?<![0-9A-Za-z])2201(?![0-9A-Za-z])", text)  # the extension
    for name in ("Diversion", "History-Info", "Referred-By", "Remote-Party-ID", "User-Agent", "Subject",
                 "Organization", "Alert-Info", "Reply-To", "X-Staff-Mobile", "X-Extension", "X-Device"):
        assert not re.search(rf"^{name}:", text, re.M | re.I), name
    assert text.count("\nX-Case-Id: CASE-4242") == len(rows)  # the allow-list still works
    assert proc.log().count("end status=200") == len(rows)


def test_citizen_call_keeps_the_citizen_number_in_national_form(tmp_path: Path) -> None:
    """A citizen's call from the carrier (E.164) reaches the department's phones with From and PAI
    in national form; a refusal from the PBX reaches the carrier without its reason text."""
    cp, bp, pp = free_port(CARRIER), free_port(CARRIER_B), free_port(PBX)
    with sipp_background(["-sn", "uas", "-i", PBX, "-p", str(pp), "-trace_msg", "-message_file",
                          str(tmp_path / "pbx.log")], tmp_path):
        proc, port = _start(tmp_path, _config(tmp_path, cp, bp, pp))
        try:
            _run(tmp_path, ["-sf", str(SCENARIOS / "uac_pbx_outbound.xml"), f"127.0.0.1:{port}", "-i", CARRIER,
                            "-p", str(free_port(CARRIER)), "-s", "+82221332200", "-key", "ext", "+821055556666",
                            "-m", "1"])
            proc.settle()
        finally:
            proc.stop()
    inv = _invites((tmp_path / "pbx.log").read_bytes().decode("utf-8"))[0]
    assert inv.startswith(f"INVITE sip:2200@{PBX}:{pp} SIP/2.0")
    assert _header(inv, "From")[0].startswith('"Kim Minsu" <sip:01055556666@127.0.0.1>;tag=')
    assert _header(inv, "P-Asserted-Identity") == ['"Kim Minsu" <sip:01055556666@127.0.0.1>']


def test_department_refusal_reveals_nothing_to_the_carrier(tmp_path: Path) -> None:
    """The PBX refuses with a phrase and a Reason naming the department's situation: the carrier
    gets the status with the standard phrase and a bare cause."""
    cp, bp, pp = free_port(CARRIER), free_port(CARRIER_B), free_port(PBX)
    reject = tmp_path / "uas_lunch.xml"
    reject.write_text((SCENARIOS / "uas_reject.xml").read_text().replace(
        "486 Busy Here", "480 Lunch Break Until 13h").replace(
        "Content-Length: 0", 'Reason: SIP;cause=480;text="lunch break"\n      Content-Length: 0', 1))
    expect = tmp_path / "uac_480.xml"
    expect.write_text((SCENARIOS / "uac_expect_status.xml").read_text().replace(
        '<recv response="486" response_txn="invite"/>',  # our ringback (183) may come first
        '<recv response="183" optional="true" response_txn="invite"/>\n  '
        '<recv response="480" response_txn="invite"/>'))
    with sipp_background(["-sf", str(reject), "-i", PBX, "-p", str(pp)], tmp_path):
        proc, port = _start(tmp_path, _config(tmp_path, cp, bp, pp))
        try:
            _run(tmp_path, ["-sf", str(expect), f"127.0.0.1:{port}", "-i", CARRIER, "-p", str(free_port(CARRIER)),
                            "-s", "0221332200", "-m", "1", "-trace_msg", "-message_file",
                            str(tmp_path / "carrier.log")])
            proc.settle()
        finally:
            proc.stop()
    log = (tmp_path / "carrier.log").read_text(errors="replace")
    assert re.search(r"^SIP/2.0 480 Temporarily Unavailable\r?$", log, re.M), log[:2000]
    assert "unch" not in log and re.search(r"^Reason: SIP;cause=480\r?$", log, re.M)
