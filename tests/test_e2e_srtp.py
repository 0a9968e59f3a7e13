"""SDES-SRTP end to end against baresip (Debian ``baresip-core``, its ``srtp`` module, RTP/SAVP mandatory).

baresip sends a known speech-like signal from a WAV file, SRTP-protected with the key of its SDP. The
B2BUA decrypts it and relays plain RTP to a SIPp peer that echoes it (``-rtp_echo``), encrypts the echo
with the key of its own SDP, and baresip decrypts it; baresip's ``sndfile`` module writes what it
decoded. If either side could not decrypt the other, that file holds no signal (baresip drops what
fails authentication, and so do we), so the test compares it with the signal sent.

Both directions of the offer: baresip calling in on a trunk that accepts SRTP (we answer RTP/SAVP), and
a call out to a trunk that requires it (we offer RTP/SAVP, baresip answers).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from harness import ROOT, b2bua, free_port, make_cert, sipp, sipp_background
from rtp_peer import best_correlation, speech_like

BARESIP = shutil.which("baresip") or "baresip"


@pytest.fixture(autouse=True)
def _peers_installed(sipp_installed: None) -> None:
    """A missing peer is a failure, not a skip (as for SIPp: see conftest.py)."""
    assert shutil.which("baresip"), "baresip is not installed: apt install baresip-core (./scripts/test.sh does)"
SECONDS = 4.0


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.astype("<i2").tobytes())


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _baresip_home(tmp: Path, port: int, source: Path, answer: bool, cafile: Path | None = None) -> Path:
    """A baresip configuration: PCMU only, SRTP mandatory (RTP/SAVP), the WAV as microphone, no sound card."""
    home = tmp / "baresip"
    (home / "dumps").mkdir(parents=True)
    (home / "config").write_text(f"""\
poll_method epoll
sip_listen 127.0.0.1:{port}
audio_player aubridge,nil
audio_source aufile,{source}
audio_alert aubridge,nil
rtp_ports 41000-41100
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module srtp.so
module sndfile.so
module_app account.so
module_app menu.so
snd_path {home / 'dumps'}
""" + (f"sip_cafile {cafile}\n" if cafile else ""))
    mode = ";answermode=auto" if answer else ""
    (home / "accounts").write_text(
        f"<sip:0212345678@127.0.0.1:{port}>;regint=0;mediaenc=srtp-mand;audio_codecs=PCMU{mode}\n")
    return home


def _decoded(home: Path) -> np.ndarray:
    """What baresip decoded from the B2BUA's SRTP (sndfile's ``-dec.wav``)."""
    dumps = sorted((home / "dumps").glob("*dec*.wav"))
    assert dumps, f"baresip wrote no decoded audio: {list((home / 'dumps').iterdir())}"
    return _read_wav(dumps[0])


def _routing(lab: dict) -> dict:
    """The shipped routing with its lab trunk (127.0.0.0/8) changed by ``lab``."""
    base = yaml.safe_load((ROOT / "config" / "routing.yaml").read_text())
    trunks = [dict(t, **lab) if t["name"] == "lab" else t for t in base["trunks"]]
    return {"trunks": trunks}


def _check_echo(home: Path, log: str, sent: np.ndarray) -> None:
    assert "SRTP is Enabled" in log, log[-3000:]
    assert "failed to decrypt" not in log, log[-3000:]
    heard = _decoded(home).astype(np.float64)
    # the echo of what baresip sent, after two G.711 round trips: found, and loud enough to be it
    corr = best_correlation(sent[: int(2.0 * 8000)], heard)
    assert corr > 0.9, corr
    assert np.sqrt(np.mean(heard ** 2)) > 0.3 * np.sqrt(np.mean(sent.astype(np.float64) ** 2))


def test_baresip_calls_in_over_tls_with_srtp_and_hears_its_echo(tmp_path: Path) -> None:
    """The keys travel over TLS (the trunk does not allow them in the clear): baresip verifies our
    certificate, offers RTP/SAVP, and hears its own speech back through both SRTP legs of the B2BUA."""
    sent = speech_like(SECONDS)
    _write_wav(tmp_path / "speech.wav", sent)
    uas_port, bs_port = free_port(), free_port()
    cert, key = make_cert(tmp_path)
    home = _baresip_home(tmp_path, bs_port, tmp_path / "speech.wav", answer=False, cafile=cert)
    routing = _routing({"srtp": "accept"})
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-rtp_echo",
                          "-mp", str(free_port())], tmp_path), \
            b2bua(tmp_path, uas_port=uas_port, routing=routing, transports=("udp", "tls"),
                  sip={"tls": {"cert": str(cert), "key": str(key)}}) as (proc, port):
        out = subprocess.run([BARESIP, "-f", str(home), "-t", str(int(SECONDS + 3)),
                              "-e", f"/dial sip:0212345678@127.0.0.1:{port};transport=tls"],
                             capture_output=True, timeout=60, cwd=tmp_path)
        log = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
        proc.settle()
        b2b_log = proc.log()
    assert "transport=tls" in b2b_log and "end status=200" in b2b_log, b2b_log[-3000:]
    _check_echo(home, log, sent)


def test_the_same_offer_over_udp_is_refused_while_keys_must_travel_over_tls(tmp_path: Path) -> None:
    sent = speech_like(1.0)
    _write_wav(tmp_path / "speech.wav", sent)
    uas_port, bs_port = free_port(), free_port()
    home = _baresip_home(tmp_path, bs_port, tmp_path / "speech.wav", answer=False)
    with sipp_background(["-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port)], tmp_path), \
            b2bua(tmp_path, uas_port=uas_port, routing=_routing({"srtp": "accept"})) as (proc, port):
        out = subprocess.run([BARESIP, "-f", str(home), "-t", "3", "-e", f"/dial sip:0212345678@127.0.0.1:{port}"],
                             capture_output=True, timeout=60, cwd=tmp_path)
    log = out.stdout.decode(errors="replace")
    assert "session closed: 488 Not Acceptable Here" in log, log[-3000:]


def test_a_trunk_that_requires_srtp_is_offered_it_and_baresip_answers(tmp_path: Path) -> None:
    sent = speech_like(SECONDS, seed=11)
    _write_wav(tmp_path / "speech.wav", sent)
    bs_port = free_port()
    home = _baresip_home(tmp_path, bs_port, tmp_path / "speech.wav", answer=True)
    routing = _routing({})  # the caller (SIPp) is the lab PBX, plain RTP; the citizen's carrier requires SRTP
    routing["trunks"].append({"name": "secure-carrier", "kind": "carrier", "addresses": ["127.0.0.77/32"],
                              "gateways": [{"uri": f"sip:127.0.0.1:{bs_port}"}], "srtp": "require",
                              "sdes_over_cleartext": True})
    routing["routes"] = [{"name": "lab", "prefix": "", "trunks": ["secure-carrier"]}]
    baresip = subprocess.Popen([BARESIP, "-f", str(home), "-t", str(int(SECONDS + 8))],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        time.sleep(1.0)
        with b2bua(tmp_path, uas_port=bs_port, routing=routing) as (proc, port):
            res = sipp(["-sn", "uac", "-s", "0212345678", f"127.0.0.1:{port}", "-i", "127.0.0.1",
                        "-p", str(free_port()), "-m", "1", "-rtp_echo", "-mp", str(free_port()),
                        "-d", str(int((SECONDS - 1.5) * 1000))], tmp_path, timeout=60)
            assert res.returncode == 0, res.stdout.decode(errors="replace")[-2000:] + proc.log()[-3000:]
    finally:
        baresip.terminate()
        log = baresip.communicate(timeout=10)[0].decode(errors="replace")
    _check_echo(home, log, sent)
