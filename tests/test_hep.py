"""HEP v3 export (b2bua/hep.py): packets a Homer collector reads, and a running B2BUA sending every SIP message
of a SIPp call to a collector socket on loopback."""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from pathlib import Path

import yaml
from harness import B2BUAProcess, free_port, sipp, sipp_background, write_config

from b2bua.hep import encode

INVITE = (b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
          b"Call-ID: hep-test-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


def decode(packet: bytes) -> dict[int, bytes]:
    """A collector's reading of a HEP3 packet: chunk type -> value (vendor 0 only), lengths checked."""
    assert packet[:4] == b"HEP3"
    (total,) = struct.unpack("!H", packet[4:6])
    assert total == len(packet)
    chunks, at = {}, 6
    while at < total:
        vendor, kind, length = struct.unpack("!HHH", packet[at:at + 6])
        assert vendor == 0 and length >= 6 and at + length <= total
        chunks[kind] = packet[at + 6:at + length]
        at += length
    assert at == total
    return chunks


def test_a_packet_carries_addresses_time_ids_and_the_message() -> None:
    when = 1_800_000_000.25
    chunks = decode(encode(INVITE, ("192.0.2.10", 5070), ("192.0.2.1", 5060), "udp", when, capture_id=2001,
                           password="homer"))
    assert chunks[1] == b"\x02" and chunks[2] == bytes([17]) and chunks[11] == b"\x01"
    assert ipaddress.ip_address(chunks[3]) == ipaddress.ip_address("192.0.2.10")
    assert ipaddress.ip_address(chunks[4]) == ipaddress.ip_address("192.0.2.1")
    assert struct.unpack("!H", chunks[7])[0] == 5070 and struct.unpack("!H", chunks[8])[0] == 5060
    assert struct.unpack("!I", chunks[9])[0] == 1_800_000_000 and struct.unpack("!I", chunks[10])[0] == 250_000
    assert struct.unpack("!I", chunks[12])[0] == 2001 and chunks[14] == b"homer"
    assert chunks[17] == b"hep-test-1@127.0.0.1" and chunks[15] == INVITE


def test_ipv6_and_tcp_are_written_as_such() -> None:
    chunks = decode(encode(INVITE, ("::1", 5070), ("::1", 5060), "tcp", 1.0, capture_id=7))
    assert chunks[1] == bytes([10]) and chunks[2] == bytes([6])
    assert ipaddress.ip_address(chunks[5]) == ipaddress.ip_address("::1") and 3 not in chunks


def test_a_call_through_the_b2bua_reaches_the_collector_message_by_message(tmp_path: Path) -> None:
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(0.5)
    uas_port, port = free_port(), free_port()
    cfg = write_config(tmp_path / "config", routing={"routes": [{"name": "lab", "prefix": "",
                                                                 "targets": [f"sip:127.0.0.1:{uas_port}"]}]})
    data = yaml.safe_load(cfg.read_text())
    data["hep"] = {"address": f"127.0.0.1:{collector.getsockname()[1]}", "capture_id": 4242}
    cfg.write_text(yaml.safe_dump(data))
    packets: list[dict[int, bytes]] = []
    try:
        with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path):
            proc = B2BUAProcess(cfg, [f"udp:127.0.0.1:{port}"], tmp_path / "b2bua.log").start()
            try:
                res = sipp(["-sn", "uac", f"127.0.0.1:{port}", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "1"],
                           tmp_path)
                assert res.returncode == 0
                proc.settle()
            finally:
                proc.stop()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                packets.append(decode(collector.recv(65535)))
            except TimeoutError:
                if len(packets) >= 14:
                    break
    finally:
        collector.close()
    firsts = [p[15].split(b"\r\n", 1)[0] for p in packets]
    # each leg's INVITE, 100/180/200, ACK, BYE and 200: in from the caller, out to the callee and back
    assert sum(f.startswith(b"INVITE ") for f in firsts) == 2 and sum(f.startswith(b"BYE ") for f in firsts) == 2
    assert sum(f.startswith(b"ACK ") for f in firsts) == 2 and sum(f == b"SIP/2.0 180 Ringing" for f in firsts) == 2
    assert all(struct.unpack("!I", p[12])[0] == 4242 for p in packets)
    invites = [p for p in packets if p[15].startswith(b"INVITE ")]
    ports = {(struct.unpack("!H", p[7])[0], struct.unpack("!H", p[8])[0]) for p in invites}
    assert (port, uas_port) in {(s, d) for s, d in ports}  # ours to the callee
    assert any(d == port for _, d in ports)  # the caller's to us
    assert len({p[17] for p in invites}) == 2  # two legs, two Call-IDs (topology hiding)
