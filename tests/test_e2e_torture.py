"""RFC 4475 torture messages over the wire: each answered (or dropped) as INDEX.md says,
and the process answers an OPTIONS right after every one of them."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

from harness import b2bua, free_port

TORTURE = Path(os.environ.get("RFC4475_DIR", Path(__file__).resolve().parent / "data" / "rfc4475"))

#: What we answer on the wire: a status code, or None for silence (dropped).
EXPECT: dict[str, set[int | None]] = {
    "wsinv.dat": {481},  # valid, but its To tag names a dialog we do not have
    "intmeth.dat": {501, 405},
    "esc01.dat": {100},
    "escnull.dat": {401},  # REGISTER for an unknown device is challenged
    "esc02.dat": {501, 405},
    "lwsdisp.dat": {200},
    "longreq.dat": {100},
    "dblreq.dat": {401},
    "semiuri.dat": {200},
    "transports.dat": {200},
    "mpart01.dat": {405, 415},
    "unreason.dat": {None},
    "noreason.dat": {None},
    "badinv01.dat": {400},
    "clerr.dat": {400, None},
    "ncl.dat": {400},
    "scalar02.dat": {400},
    "scalarlg.dat": {None},
    "quotbal.dat": {400},
    "ltgtruri.dat": {400},
    "lwsruri.dat": {400},
    "lwsstart.dat": {400},
    "trws.dat": {400},
    "escruri.dat": {400},
    "baddate.dat": {100},
    "regbadct.dat": {400},
    "badaspec.dat": {400},
    "baddn.dat": {400},
    "badvers.dat": {505},
    "mismatch01.dat": {400},
    "mismatch02.dat": {400},
    "bigcode.dat": {None},
    "badbranch.dat": {200},
    "insuf.dat": {400},
    "unkscm.dat": {416},
    "novelsc.dat": {416},
    "unksm2.dat": {401},
    "bext01.dat": {420},
    "invut.dat": {415},
    "regaut01.dat": {401},
    "multi01.dat": {400},
    "mcl01.dat": {400},
    "bcast.dat": {None},
    "zeromf.dat": {200},
    "cparam01.dat": {401},
    "cparam02.dat": {401},
    "regescrt.dat": {401},
    "sdp01.dat": {406},
    "inv2543.dat": {100, 400},
    "test.dat": {400, None},
}


def test_table_covers_every_file() -> None:
    assert sorted(p.name for p in TORTURE.glob("*.dat")) == sorted(EXPECT)


def _call_id(message: bytes) -> bytes:
    m = re.search(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", message, re.M | re.I)
    return m.group(1) if m else b""


def _first_status(sock: socket.socket, wait: float, call_id: bytes) -> int | None:
    """The first response for ``call_id`` (retransmissions for earlier messages are skipped)."""
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            return None
        m = re.match(rb"SIP/2\.0 (\d{3})", data)
        assert m, data[:200]
        if _call_id(data) == call_id:
            return int(m.group(1))
    return None


def _drain(sock: socket.socket) -> None:
    sock.settimeout(0.05)
    try:
        while True:
            sock.recvfrom(65535)
    except TimeoutError:
        pass


def _options(n: int, port: int, local_port: int) -> bytes:
    return (f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK-ping{n}\r\n"
            f"From: <sip:tester@127.0.0.1>;tag=t{n}\r\nTo: <sip:ping@127.0.0.1>\r\n"
            f"Call-ID: ping{n}@tester\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def test_torture_messages_over_udp(tmp_path: Path) -> None:
    files = sorted(TORTURE.glob("*.dat"))
    assert len(files) == 50
    # Several files reuse one branch and sent-by, so RFC 3261 §17.2.3 makes them retransmissions
    # of each other; with T1 = 5 ms the earlier transaction is gone 64*T1 = 320 ms later.
    seen_vias: set[bytes] = set()
    with b2bua(tmp_path, uas_port=free_port(), transports=("udp",),
               sip={"timers": {"t1_ms": 5, "t2_ms": 40, "t4_ms": 50}}) as (proc, port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        local_port = sock.getsockname()[1]
        results: dict[str, int | None] = {}
        for n, path in enumerate(files):
            expect = EXPECT[path.name]
            data = path.read_bytes()
            via = re.search(rb"^(?:Via|v)\s*:([^\r\n]*)", data, re.M | re.I)
            if via and via.group(1) in seen_vias:
                time.sleep(0.4)
            if via:
                seen_vias.add(via.group(1))
            sock.sendto(data, ("127.0.0.1", port))
            status = _first_status(sock, 0.3 if None in expect else 2.0, _call_id(data))
            results[path.name] = status
            _drain(sock)
            sock.sendto(_options(n, port, local_port), ("127.0.0.1", port))
            got = _first_status(sock, 2.0, f"ping{n}@tester".encode())
            assert got == 200, f"no 200 to OPTIONS after {path.name}"
            assert proc.alive(), f"process died after {path.name}: {proc.log()[-2000:]}"
        sock.close()
        wrong = {k: v for k, v in results.items() if v not in EXPECT[k]}
        assert not wrong, f"unexpected answers: {wrong}"
        assert "Traceback" not in proc.log()
