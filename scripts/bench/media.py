#!/usr/bin/env python3
"""Media relay benchmark: N concurrent calls, each streaming 50 packets/s each way through the B2BUA.

Topology (loopback, UDP)::

    load generator (this script)  --RTP-->  B2BUA leg a | leg b  --RTP-->  SIPp UAS (-rtp_echo)
          N sockets, 50 pps each  <--RTP--  (relay, header rewrite)  <--RTP--  echoes every packet

SIPp places the N calls (``uac_rtp.xml``: each call's SDP names one of our sockets) and its UAS
echoes the RTP it receives, so every packet crosses the B2BUA twice: caller->callee and back. The
generator stamps each payload with its send time and reports, per run:

* calls, packets/s through the B2BUA (both directions), B2BUA CPU % (its threads' time on a CPU over the
  window, as cps.py reads it, the media worker processes included; 100 % = one core) and its CPU time
  per relayed packet (one packet in and one out: B2BUA CPU seconds / (packets sent + packets echoed
  back)),
* the CPU % of the load itself on the same cores: this generator and SIPp's echo,
* loss (sent vs echoed back) and where the kernel dropped packets (full receive buffers of the B2BUA's,
  SIPp's or the generator's sockets; SIPp's echo socket is given a 4 MiB buffer like the generator's
  sockets, see enlarge_rcvbuf), added delay p50/p99 for one traversal (round trip / 2, from each
  packet's own send moment to the kernel's receive stamp of its echo, so the generator's send and read
  loops are not counted),
* ``--phases``: ``burst`` sends every call's packet at the same moment of each 20 ms (N packets queue at
  once: the worst case), ``spread`` at 20 evenly spaced moments (calls that began at random times),
* B2BUA RSS per call (RSS during the run minus RSS before the calls, divided by N),
* with ``--pin`` (in-process runs only): the B2BUA alone on the first core, the load on the others, so
  the scheduler does not stack the echo and the generator on the B2BUA's core when they wake,
* with ``--detect``: citizens' calls to a department, each configuration once with abuse detection off and
  once on (the real segmenter and Whisper recognizers on every call's caller leg), every payload real Korean
  speech in G.711 (so the recognizers work, as they would on a busy day), to show detection never delays the
  relay: the p99 delay of the two side by side,
* with ``--flood``: one stranger sends ``--flood-pps`` packets/s at one call's port for the whole
  window, to show a flood does not slow the other calls (its packets are dropped and counted); the loss
  of the other calls and of the flooded one are reported apart, the delay is the other calls'.

    python scripts/bench/media.py --calls 100,250,500 --seconds 20 --workers 0,2

``BENCH_B2BUA_PREFIX="chrt -r 10"`` (or ``taskset -c 0``, ``perf record -g --``) starts the B2BUA under that
command. ``--dump`` saves every echo's send moment and delay, to see when the slow ones happened.

``--code base=/path/to/checkout,new=.`` runs every configuration with each checkout in turn (same
venv, ``PYTHONPATH`` pointing at the checkout), so a before/after table comes from one run.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = REPO / "scripts" / "sipp"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cps import process_cpu_seconds, tree_cpu_seconds  # noqa: E402  (the benchmarks' one CPU reading)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_drops(ports) -> int:
    """Datagrams the kernel dropped (receive buffer full) on loopback UDP sockets bound to ``ports``."""
    total = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].rsplit(":", 1)[1], 16) in ports:
            total += int(f[-1])
    return total


def enlarge_rcvbuf(pid: int, port: int, size: int) -> bool:
    """Give another process's UDP socket bound to ``port`` a ``size`` receive buffer (pidfd_getfd, Linux
    5.6+, needs ptrace rights over it): SIPp's echo socket keeps the system default (about 8 ms of
    25,000 packets/s), so without this the loss measured is mostly SIPp's, not the B2BUA's."""
    import ctypes

    inodes = {f[9] for f in (ln.split() for ln in Path("/proc/net/udp").read_text().splitlines()[1:])
              if int(f[1].rsplit(":", 1)[1], 16) == port}
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    if pidfd < 0:
        return False
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                mine = libc.syscall(438, pidfd, int(fd.name), 0)  # pidfd_getfd
                if mine < 0:
                    return False
                with socket.socket(fileno=mine) as dup:
                    dup.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                return True
    finally:
        os.close(pidfd)
    return False


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Result:
    code: str
    phases: str
    workers: int
    calls: int
    flood: bool
    pps: float
    cpu: float
    us_per_pkt: float
    gen_cpu: float
    echo_cpu: float
    loss: float
    loss_others: float
    flooded_loss: float
    drops: tuple[int, ...]
    p50: float
    p99: float
    rss_per_call: float
    sent: int
    received: int
    #: None: the lab route (no department); False/True: a department's calls, recording off/full
    record: bool | None = None
    #: recordings written, KiB per call per minute of call (with ``record``)
    disk_kib_per_min: float = 0.0
    #: None: not asked; False/True: a department's calls with abuse detection off/on (``--detect``)
    detect: bool | None = None
    #: utterances the detection processes judged and dropped during the window (with ``detect``)
    judged: int = 0
    dropped: int = 0
    #: None: not asked; 0: the console closed; N: N viewers with the console open (``--console``)
    console: int | None = None
    #: requests the console's viewers made during the window (stream events not counted), and failures
    console_requests: int = 0
    console_failures: int = 0


DID = "0221332200"
#: Linux's SO_TIMESTAMPNS (= SCM_TIMESTAMPNS), which the socket module does not name
SO_TIMESTAMPNS = 35
#: --detect: seconds the detection processes get to load their models before the window
DETECTION_WARMUP_S = 15
#: send moments per 20 ms with --phases spread (one per millisecond)
SLOTS = 20


def department_routing(routing: dict, uas_port: int, record: bool, cfgdir: Path, detect: bool = False) -> dict:
    """The bench's calls as citizens' calls to one department whose phones are the SIPp echo:
    recording ``full`` (a 40 ms notice, so the calls set up fast) or ``off``, no ringback, abuse detection
    on or off."""
    import wave

    with wave.open(str(cfgdir / "notice.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(640))
    routing["trunks"] = [
        {"name": "bench-carrier", "kind": "carrier", "addresses": ["127.0.0.1/32"],
         "gateways": [{"uri": "sip:127.0.0.1:9"}], "max_calls": 100000, "max_cps": 10000},
        {"name": "bench-pbx", "kind": "pbx", "addresses": ["127.0.0.9/32"],
         "gateways": [{"uri": f"sip:127.0.0.1:{uas_port}"}], "codecs": ["PCMU", "PCMA"]}]
    routing["routes"] = [{"name": "out", "prefix": "", "trunks": ["bench-carrier"]}]
    routing["departments"] = [{"name": "bench", "display_name": "bench", "numbers": [DID], "trunk": "bench-pbx",
                               "extension": "2200", "policy": {"recording": "full" if record else "off",
                                                               "recording_notice": "notice.wav", "ringback": {},
                                                               "closed": {}, "abuse": {"enabled": detect}}}]
    routing["devices"] = []
    routing["schedules"] = []
    return routing


def run(calls: int, seconds: float, flood_pps: int, workdir: Path, workers: int = 0,
        code: tuple[str, Path] = ("", REPO), pin: bool = False, record: bool | None = None,
        phases: str = "spread", dump: bool = False, detect: bool | None = None,
        console: int | None = None, system: str = "ours") -> Result:
    label, repo = code
    if system == "rtpengine":
        label = "rtpengine"
    # the generator's sockets first: free_port() below must not pick a port the kernel then hands them
    socks = []
    for _ in range(calls):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # the kernel stamps each echo as it arrives
        socks.append(s)
    port = free_port()
    cfgdir = Path(tempfile.mkdtemp(prefix=f"cfg-{label}-{calls}-{flood_pps}-{workers}-", dir=workdir))
    import yaml

    proc_cfg = yaml.safe_load((repo / "config" / "b2bua.yaml").read_text())
    # media ports below the ephemeral range (32768-): the generator's sockets must not take any of them, or
    # worker mode (whose controller hands out ports blindly) advertises ports its worker could not bind
    proc_cfg["media"].update({"port_min": 24000, "port_max": 24000 + 8 * calls + 64, "rtp_timeout_s": 600,
                              "workers": workers})
    proc_cfg["logging"] = {"level": "warning", "format": "text"}
    proc_cfg["metrics"] = {"address": f"127.0.0.1:{free_port()}"}  # never the shipped port another run holds
    proc_cfg["storage"] = {"url": f"sqlite:///{cfgdir / 'cdr.sqlite3'}", "recordings": str(cfgdir / "recordings")}
    if detect is not None:  # the models this checkout assembled and trained (var/), as the tests use them
        proc_cfg.setdefault("detection", {}).update({"model_dir": str(REPO / "var" / "whisper-base"),
                                                     "model_cache": str(REPO / "var" / "abuse-models")})
    if console:  # an auditor (who may see every page) for the console's viewers
        proc_cfg["admin"] = {"socket": None, "users": [{"name": CONSOLE_USER, "password_hash": console_hash(),
                                                        "role": "auditor"}]}
    (cfgdir / "b2bua.yaml").write_text(yaml.safe_dump(proc_cfg))
    shutil.copy(repo / "config" / "holidays.yaml", cfgdir / "holidays.yaml")
    if (repo / "config" / "abuse_lexicon.yaml").exists():  # (older checkouts have none)
        shutil.copy(repo / "config" / "abuse_lexicon.yaml", cfgdir / "abuse_lexicon.yaml")

    csv = cfgdir / "calls.csv"
    csv.write_text("SEQUENTIAL\n" + "".join(f"{s.getsockname()[1]};0;PCMU;\n" for s in socks))

    procs: list[subprocess.Popen] = []
    own_cpus = os.sched_getaffinity(0)
    b2b_cpus = None
    if pin:  # the B2BUA on one core, the load (this generator, SIPp, the flood) on another
        cpus = sorted(own_cpus)
        b2b_cpus, load_cpus = set(cpus[:1]), set(cpus[1:]) or set(cpus)
        os.sched_setaffinity(0, load_cpus)  # inherited by SIPp and the flood worker
    try:
        uas, uas_port, echo_port = _start_echo(cfgdir)
        procs.append(uas)
        targets: dict[int, tuple[str, int]] = {}
        if system == "rtpengine":
            b2b, targets = _rtpengine_calls(cfgdir, socks, echo_port, workers, proc_cfg["media"], procs)
            if not enlarge_rcvbuf(uas.pid, echo_port, 4 << 20):
                print("[media] could not enlarge SIPp's echo receive buffer: its drops count as loss", file=sys.stderr)
            rss0 = rss_kib(b2b.pid)
        else:
            routing = yaml.safe_load((repo / "config" / "routing.yaml").read_text())
            routing["routes"] = [{"name": "bench", "prefix": "", "targets": [f"sip:127.0.0.1:{uas_port}"]}]
            if record is not None or detect is not None:
                routing = department_routing(routing, uas_port, bool(record), cfgdir, bool(detect))
            (cfgdir / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
            b2b = subprocess.Popen([*os.environ.get("BENCH_B2BUA_PREFIX", "").split(), sys.executable, "-m", "b2bua",
                                    "run", "--config", str(cfgdir / "b2bua.yaml"), "--listen", f"udp:127.0.0.1:{port}"],
                                   cwd=repo, stdout=subprocess.DEVNULL,
                                   stderr=open(cfgdir / "b2bua.log", "wb"), env={**os.environ, "PYTHONPATH": str(repo)},
                                   preexec_fn=(lambda: os.sched_setaffinity(0, b2b_cpus)) if b2b_cpus else None)
            procs.append(b2b)
            time.sleep(1.5)
            if not enlarge_rcvbuf(uas.pid, echo_port, 4 << 20):
                print("[media] could not enlarge SIPp's echo receive buffer: its drops count as loss", file=sys.stderr)
            rss0 = rss_kib(b2b.pid)
            hold_ms = int((seconds + 8 + calls / 100 + (DETECTION_WARMUP_S if detect else 0)) * 1000)
            service = ["-s", DID] if record is not None or detect is not None else []
            uac = subprocess.Popen([SIPP, "-sf", str(SCENARIOS / "uac_rtp.xml"), f"127.0.0.1:{port}", *service,
                                    "-i", "127.0.0.1",
                                    "-p", str(free_port()), "-m", str(calls), "-r", "100", "-l", str(calls),
                                    "-d", str(hold_ms), "-inf", str(csv), "-trace_msg", "-message_file",
                                    str(cfgdir / "uac.log"), "-nostdin"], cwd=cfgdir,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(uac)
            deadline = time.monotonic() + 30 + calls / 50
            pattern = re.compile(r"SIP/2.0 200 OK.*?Call-ID: (\d+)-\d+@.*?m=audio (\d+)", re.S)
            while len(targets) < calls and time.monotonic() < deadline:
                time.sleep(0.5)
                text = (cfgdir / "uac.log").read_text(errors="replace") if (cfgdir / "uac.log").exists() else ""
                for block in text.split("-----"):
                    if "received" in block[:120]:
                        m = pattern.search(block)
                        if m:
                            targets[int(m.group(1)) - 1] = ("127.0.0.1", int(m.group(2)))
        if len(targets) < calls:
            raise RuntimeError(f"only {len(targets)} of {calls} calls came up")
        flood = None
        if flood_pps:
            flood = subprocess.Popen([sys.executable, __file__, "--flood-worker", f"{targets[0][1]}",
                                      str(flood_pps), str(seconds + 2)])
            procs.append(flood)
        time.sleep(0.5)
        metrics_port = proc_cfg["metrics"]["address"]
        detection0 = detection_counts(metrics_port) if detect else (0, 0)
        if detect:  # the first monitored call started the detection processes: their models load first
            time.sleep(DETECTION_WARMUP_S)
        viewers = None
        if console:  # the console opened by `console` viewers for the whole window (logged in before it)
            viewers = start_console(metrics_port, console, seconds + 1)
            procs.append(viewers)
            time.sleep(1.0)
        # stream for `seconds`, 50 pps per call, stamping each payload with its send time (CLOCK_REALTIME,
        # the kernel's receive stamps' clock, so the generator's own reading time is not counted). Kept
        # cheap, as it shares the cores with the B2BUA: one read per ready socket per poll
        # (level-triggered: no failing read). Phases: "burst" sends every call's packet at the same
        # moment of each 20 ms (the worst case: N packets queue at once), "spread" gives the calls
        # SLOTS evenly spaced send moments, as calls that began at random times have.
        slots = 1 if phases == "burst" else SLOTS
        sent = received = received0 = 0
        delays: list[int] = []
        flooded_fd = socks[0].fileno() if flood_pps else -1  # its echoes are counted apart
        gen_ports = {s.getsockname()[1] for s in socks}
        echo_ports = {echo_port, echo_port + 2}
        engine_ports = set(range(proc_cfg["media"]["port_min"], proc_cfg["media"]["port_max"] + 1))
        engine_ports -= gen_ports | echo_ports
        drop_sets = (engine_ports, echo_ports, gen_ports)
        drops0 = [udp_drops(d) for d in drop_sets]
        stamp_at = struct.Struct("!Q").unpack_from
        pack_into = struct.Struct("!BBHIIQ").pack_into
        pkt = bytearray(12 + 8 + 152)
        pkt[20:] = b"\xff" * 152
        speech = speech_frames() if detect is not None else None  # real speech, so detection has work
        groups = [[(s.sendto, targets[i]) for i, s in enumerate(socks) if i % slots == g] for g in range(slots)]
        recvs = {s.fileno(): s.recvmsg for s in socks}
        poller = select.epoll()
        for s in socks:
            poller.register(s.fileno(), select.EPOLLIN)
        poll, clock, append = poller.poll, time.time_ns, delays.append
        cmsg_space, timespec = socket.CMSG_SPACE(16), struct.Struct("@qq").unpack_from
        seq = 0
        rss_mid = 0
        trace: list[int] | None = [] if dump else None

        def collect(timeout: float) -> None:
            """Read what is ready (one read per ready socket) and note each echo's delay."""
            nonlocal received, received0
            for fd, _ in poll(timeout):
                try:
                    data, ancillary, _, _ = recvs[fd](2048, cmsg_space)
                except BlockingIOError:
                    continue
                if len(data) >= 20:
                    if fd == flooded_fd:
                        received0 += 1
                        continue
                    received += 1
                    arrived = next((sec * 1_000_000_000 + nsec for level, kind, value in ancillary
                                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                                    for sec, nsec in [timespec(value)]), None) or clock()
                    stamp = stamp_at(data, 12)[0]
                    append(arrived - stamp)
                    if trace is not None:
                        trace.append(stamp)

        disk0 = _recorded_bytes(cfgdir / "recordings") if record else 0
        cpu0, echo0, gen0 = tree_cpu_seconds(b2b.pid), process_cpu_seconds(uas.pid), _self_cpu()
        t0 = next_tick = time.monotonic()
        end = next_tick + seconds
        slot = 0
        while True:
            now = time.monotonic()
            if now >= next_tick:
                if now >= end:
                    break
                if slot == 0:
                    seq += 1
                    if speech is not None:
                        pkt[20:] = speech[seq % len(speech)]
                for send, target in groups[slot]:
                    pack_into(pkt, 0, 0x80, 0, seq & 0xFFFF, seq * 160, 0x5000, clock())
                    try:
                        send(pkt, target)
                        sent += 1
                    except BlockingIOError:
                        pass
                slot = (slot + 1) % slots
                next_tick += 0.02 / slots
                if seq == int(seconds * 25) and slot == 0:
                    rss_mid = rss_kib(b2b.pid)
            collect(max(0.0, next_tick - time.monotonic()))
        cpu1, echo1, gen1, t1 = tree_cpu_seconds(b2b.pid), process_cpu_seconds(uas.pid), _self_cpu(), time.monotonic()
        detection1 = detection_counts(metrics_port) if detect else (0, 0)
        # collect stragglers for 200 ms
        stop = time.monotonic() + 0.2
        while time.monotonic() < stop:
            collect(0.05)
        drops = tuple(udp_drops(d) - d0 for d, d0 in zip(drop_sets, drops0, strict=True))
        disk = 0.0
        if record:  # bytes the recordings grew by during the window, per call and minute
            disk = _recorded_bytes(cfgdir / "recordings") - disk0
            disk = disk / 1024 / calls / ((t1 - t0) / 60)
        if trace is not None:  # --dump: each echo's send moment (ns) and round trip (ns), for a timeline
            import numpy as np
            np.save(workdir / f"delays-{label or 'this'}-{phases}-{workers}-{calls}-{int(time.time())}.npy",
                    np.array([trace, delays], dtype=np.int64))
        delays.sort()
        elapsed = t1 - t0
        load = console_counts(viewers)
        sent0 = sent // calls if flood_pps else 0
        others = sent - sent0
        received_all = received + received0
        return Result(label, phases, workers, calls, bool(flood_pps), received_all * 2 * 2 / elapsed,
                      (cpu1 - cpu0) / elapsed * 100, (cpu1 - cpu0) / max(sent + received_all, 1) * 1e6,
                      (gen1 - gen0) / elapsed * 100, (echo1 - echo0) / elapsed * 100,
                      max(0.0, (sent - received_all) / max(sent, 1) * 100),
                      max(0.0, (others - received) / max(others, 1) * 100),
                      max(0.0, (sent0 - received0) / max(sent0, 1) * 100), drops,
                      delays[len(delays) // 2] / 2e6 if delays else float("nan"),
                      delays[int(len(delays) * 0.99)] / 2e6 if delays else float("nan"),
                      (rss_mid - rss0) / calls, sent, received_all, record, disk, detect,
                      detection1[0] - detection0[0], detection1[1] - detection0[1], console,
                      load["requests"], load["failures"])
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in socks:
            s.close()
        os.sched_setaffinity(0, own_cpus)


def speech_frames() -> list[bytes]:
    """A real Korean clip in G.711 µ-law, a second of silence after it, as RTP payloads less the 8 bytes
    of send stamp each packet starts with (a click in the audio, nothing the segmenter minds)."""
    import numpy as np

    sys.path.insert(0, str(REPO))
    from media import g711
    from media.speech.audio import decode_file

    clip = REPO / "tests" / "data" / "korean-speech" / "zeroth_104_003_0294.wav"
    pcm = np.clip(decode_file(clip, 8000) * 32767, -32768, 32767).astype(np.int16)
    pcm = np.concatenate([pcm, np.zeros(8000, np.int16)])
    ulaw = g711.encode(pcm[:len(pcm) // 160 * 160], 0)
    return [bytes(ulaw[i + 8:i + 160]) for i in range(0, len(ulaw), 160)]


CONSOLE_USER, CONSOLE_PASSWORD = "bench-auditor", "bench-console-password"


def console_hash() -> str:
    sys.path.insert(0, str(REPO))
    from b2bua.admin_auth import hash_password

    return hash_password(CONSOLE_PASSWORD)


def start_console(address: str, viewers: int, seconds: float) -> subprocess.Popen:
    """``console_load.py``: ``viewers`` open consoles on the admin listener at ``address``."""
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("console_load.py")), "--address", address,
                             "--user", CONSOLE_USER, "--password", CONSOLE_PASSWORD, "--viewers", str(viewers),
                             "--seconds", str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def console_counts(load: subprocess.Popen | None) -> dict[str, int]:
    """What the console's viewers did (their JSON line), once they are done."""
    if load is None:
        return {"requests": 0, "failures": 0}
    import json

    try:
        out, _ = load.communicate(timeout=20)
        return json.loads(out.decode().strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return {"requests": 0, "failures": -1}


def detection_counts(address: str) -> tuple[int, int]:
    """(detections, jobs_dropped) of the B2BUA's detection processes, from its /metrics."""
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    except OSError:
        return (0, 0)
    got = dict(re.findall(r'^b2bua_detection_total\{what="(\w+)"\} ([0-9.e+]+)$', text, re.M))
    return int(float(got.get("detections", 0))), int(float(got.get("jobs_dropped", 0)))


def _recorded_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*.wav")) if directory.exists() else 0


def _bound(port: int) -> bool:
    return any(int(ln.split()[1].rsplit(":", 1)[1], 16) == port
               for ln in Path("/proc/net/udp").read_text().splitlines()[1:])


def _start_echo(cfgdir: Path) -> tuple[subprocess.Popen, int, int]:
    """SIPp's UAS with its RTP echo, on fresh ports until it is up (a port picked by free_port() may be
    taken before SIPp binds it)."""
    for _ in range(5):
        uas_port, echo_port = free_port(), free_port()
        uas = subprocess.Popen([SIPP, "-sn", "uas", "-i", "127.0.0.1", "-p", str(uas_port), "-rtp_echo",
                                "-mp", str(echo_port), "-nostdin"], cwd=cfgdir,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and uas.poll() is None:
            if _bound(echo_port) and _bound(uas_port):
                return uas, uas_port, echo_port
            time.sleep(0.1)
        if uas.poll() is None:
            uas.kill()
        uas.wait()
    raise RuntimeError("SIPp's UAS did not start")


# -- rtpengine, the reference (--systems rtpengine) -------------------------------------------------
RTPENGINE = shutil.which("rtpengine") or "/usr/bin/rtpengine"


def _bencode(value: Any) -> bytes:
    """Bencode, the ng protocol's encoding (written out here: a dozen lines for one benchmark's client)."""
    if isinstance(value, dict):
        return b"d" + b"".join(_bencode(k) + _bencode(v) for k, v in sorted(value.items())) + b"e"
    if isinstance(value, list):
        return b"l" + b"".join(_bencode(v) for v in value) + b"e"
    if isinstance(value, int):
        return b"i%de" % value
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return b"%d:%s" % (len(raw), raw)


def _bdecode(data: bytes, i: int = 0) -> tuple[Any, int]:
    kind = data[i:i + 1]
    if kind == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if kind in (b"l", b"d"):
        items: list[Any] = []
        i += 1
        while data[i:i + 1] != b"e":
            item, i = _bdecode(data, i)
            items.append(item)
        if kind == b"l":
            return items, i + 1
        return {items[k].decode(): items[k + 1] for k in range(0, len(items), 2)}, i + 1
    colon = data.index(b":", i)
    length = int(data[i:colon])
    return data[colon + 1:colon + 1 + length], colon + 1 + length


def _ng(sock: socket.socket, command: dict) -> dict:
    """One ng request (``<cookie> <bencoded dict>`` over UDP) and its answer."""
    cookie = os.urandom(6).hex().encode()
    sock.sendto(cookie + b" " + _bencode(command), sock.getpeername())
    while True:
        data = sock.recv(65535)
        if data.startswith(cookie + b" "):
            answer, _ = _bdecode(data, len(cookie) + 1)
            assert isinstance(answer, dict)
            if answer.get("result") != b"ok":
                raise RuntimeError(f"rtpengine: {command['command']}: {answer}")
            return answer


def _sdp(port: int, session: int) -> str:
    return (f"v=0\r\no=- {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


def _rtpengine_calls(cfgdir: Path, socks: list[socket.socket], echo_port: int, threads: int, media: dict,
                     procs: list[subprocess.Popen]) -> tuple[subprocess.Popen, dict[int, tuple[str, int]]]:
    """rtpengine (Debian's rtpengine-daemon) in userspace forwarding (no kernel table), ``threads`` worker
    threads (0: its default, one per core), one call per generator socket set up through its ng control
    protocol as Kamailio's rtpengine module would: offer with the caller's SDP (the generator's socket),
    answer with the callee's (SIPp's echo). Returns the process and, per call, where the caller sends."""
    ng_port = free_port()
    argv = [RTPENGINE, "--foreground", "--log-stderr", "--log-level=3", "--table=-1", "--interface=127.0.0.1",
            f"--listen-ng=127.0.0.1:{ng_port}", f"--port-min={media['port_min']}",
            f"--port-max={media['port_max']}", "--delete-delay=0"]
    if threads:
        argv.append(f"--num-threads={threads}")
    proc = subprocess.Popen(argv, cwd=cfgdir, stdout=subprocess.DEVNULL, stderr=open(cfgdir / "rtpengine.log", "wb"))
    procs.append(proc)
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.connect(("127.0.0.1", ng_port))
    ctl.settimeout(0.5)
    deadline = time.monotonic() + 10
    while True:  # up when it answers a ping
        try:
            ctl.send(b"0 " + _bencode({"command": "ping"}))
            if b"pong" in ctl.recv(1024):
                break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"rtpengine did not start: {(cfgdir / 'rtpengine.log').read_text()[-500:]}")
        time.sleep(0.2)
    ctl.settimeout(5)
    targets: dict[int, tuple[str, int]] = {}
    port_of = re.compile(rb"m=audio (\d+)")
    for i, s in enumerate(socks):
        call = {"call-id": f"bench-{i}", "from-tag": f"caller-{i}"}
        _ng(ctl, {"command": "offer", **call, "sdp": _sdp(s.getsockname()[1], i)})
        answer = _ng(ctl, {"command": "answer", **call, "to-tag": f"callee-{i}", "sdp": _sdp(echo_port, i)})
        m = port_of.search(answer["sdp"])
        if m:
            targets[i] = ("127.0.0.1", int(m.group(1)))
    ctl.close()
    return proc, targets


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def flood_worker(port: int, pps: int, seconds: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pkt = struct.pack("!BBHII", 0x80, 0, 1, 1, 0xBAD) + b"\xff" * 160
    end = time.monotonic() + seconds
    batch = max(1, pps // 100)
    while time.monotonic() < end:
        for _ in range(batch):
            s.sendto(pkt, ("127.0.0.1", port))
        time.sleep(0.01)


def pairs(results: list[Result], k: int) -> list[tuple[Result, Result]]:
    """(without, with) pairs of runs that compare one setting: each configuration ran its k phases without it,
    then its k phases with it."""
    return [pair for i in range(0, len(results), 2 * k)
            for pair in zip(results[i:i + k], results[i + k:i + 2 * k], strict=False)]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--flood-worker":
        flood_worker(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="50,100,250,500")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--flood", action="store_true", help="also run the largest N with a stranger flooding one port")
    ap.add_argument("--flood-pps", type=int, default=20000)
    ap.add_argument("--workers", default="0", help="media worker processes to compare, e.g. 0,2")
    ap.add_argument("--code", default="", help="checkouts to compare, label=path,... (default: this one)")
    ap.add_argument("--systems", default="ours",
                    help="ours, rtpengine (Debian's rtpengine-daemon, userspace, set up over its ng protocol; "
                         "--workers is then its --num-threads, 0 its default) or both: ours,rtpengine")
    ap.add_argument("--repeat", type=int, default=1, help="run every configuration this many times (interleaved)")
    ap.add_argument("--pin", action="store_true",
                    help="in-process runs (0 workers): the B2BUA on the first core, the load on the others")
    ap.add_argument("--phases", default="spread",
                    help="burst (all calls send at the same moment of each 20 ms), spread (calls' send moments "
                         "evenly spaced), or both to compare: burst,spread")
    ap.add_argument("--dump", action="store_true",
                    help="save every echo's send moment and round trip (.npy in the work directory, printed)")
    ap.add_argument("--record", action="store_true",
                    help="citizens' calls to a department, each configuration with recording off and full")
    ap.add_argument("--detect", action="store_true",
                    help="citizens' calls to a department speaking real speech, each configuration with abuse "
                         "detection off and on")
    ap.add_argument("--console", type=int, default=0, metavar="N",
                    help="each configuration with the operator console closed and open in N viewers "
                         "(console_load.py: live stream, charts polled, pages reloaded)")
    args = ap.parse_args()
    codes = [(c.split("=", 1)[0], Path(c.split("=", 1)[1]).resolve()) for c in args.code.split(",") if c] \
        or [("", REPO)]
    systems = [x for x in args.systems.split(",") if x]
    runs = [(code, "ours") for code in codes] * ("ours" in systems) + \
        [(("rtpengine", REPO), "rtpengine")] * ("rtpengine" in systems)
    workdir = Path(tempfile.mkdtemp(prefix="media-bench-"))
    if args.dump:
        print(f"[media] delay traces go to {workdir}", file=sys.stderr)
    results = []
    for workers in [int(w) for w in args.workers.split(",")]:
        sizes = [(int(x), 0) for x in args.calls.split(",")]
        if args.flood:
            sizes.append((sizes[-1][0], args.flood_pps))
        records: list[bool | None] = [False, True] if args.record else [None]
        detects: list[bool | None] = [False, True] if args.detect else [None]
        consoles: list[int | None] = [0, args.console] if args.console else [None]
        for n, flood in [x for x in sizes for _ in range(args.repeat)]:
            for code, system in runs:  # interleaved, so the checkouts (and systems) see the same background load
                for record, detect, console, phases in [(r, d, c, p) for r in records for d in detects
                                                        for c in consoles for p in args.phases.split(",")]:
                    for _attempt in (1, 2):
                        try:
                            results.append(run(n, args.seconds, flood, workdir, workers, code,
                                               args.pin and workers == 0, record, phases, args.dump, detect,
                                               console, system))
                            break
                        except RuntimeError as exc:  # e.g. a port taken by someone else meanwhile: once more
                            print(f"[media] {code[0]} {workers} workers, {n} calls: {exc}", file=sys.stderr)
                    print(f"[media] {code[0]} {workers} workers, {n} calls, {phases}{' flood' if flood else ''}"
                          f"{'' if record is None else ' recording' if record else ' not recording'} done",
                          file=sys.stderr)
    cw = max([4] + [len(c[0]) for c, _ in runs])
    print(f"{'code':<{cw}} {'phases':>6} {'workers':>7} {'calls':>6} {'flood':>6} {'pkts/s':>8} {'cpu %':>6} "
          f"{'us/pkt':>6} {'gen %':>6} {'echo %':>6} {'loss %':>7} {'others':>7} {'flooded':>7} "
          f"{'drops b2b/echo/gen':>18} {'p50 ms':>7} {'p99 ms':>7} {'RSS/call KiB':>12}"
          + (f" {'record':>6} {'KiB/call/min':>12}" if args.record else "")
          + (f" {'detect':>6} {'judged':>6} {'dropped':>7}" if args.detect else "")
          + (f" {'console':>7} {'requests':>8}" if args.console else ""))
    for r in results:
        print(f"{r.code:<{cw}} {r.phases:>6} {r.workers:>7} {r.calls:>6} {'yes' if r.flood else 'no':>6} "
              f"{r.pps:>8.0f} {r.cpu:>6.1f} {r.us_per_pkt:>6.1f} {r.gen_cpu:>6.1f} {r.echo_cpu:>6.1f} {r.loss:>7.3f} "
              f"{(f'{r.loss_others:.3f}' if r.flood else '-'):>7} {(f'{r.flooded_loss:.1f}' if r.flood else '-'):>7} "
              f"{'/'.join(map(str, r.drops)):>18} {r.p50:>7.2f} {r.p99:>7.2f} {r.rss_per_call:>12.1f}"
              + (f" {'full' if r.record else 'off':>6} {r.disk_kib_per_min:>12.0f}" if args.record else "")
              + (f" {'on' if r.detect else 'off':>6} {r.judged:>6} {r.dropped:>7}" if args.detect else "")
              + (f" {r.console or 'closed':>7} {r.console_requests:>8}" if args.console else ""))
    if args.record:
        k = len(args.phases.split(","))  # each configuration ran k phases with recording off, then k with it on
        for off, on in pairs(results, k):
            print(f"recording, {on.workers} workers, {on.calls} calls{' flood' if on.flood else ''}: "
                  f"CPU {off.cpu:.1f} % -> {on.cpu:.1f} % ({(on.cpu / max(off.cpu, 1e-9) - 1) * 100:+.1f} %), "
                  f"{on.disk_kib_per_min:.0f} KiB per call per minute")
    if args.detect:
        k = len(args.phases.split(","))
        for off, on in pairs(results, k):
            print(f"detection, {on.workers} workers, {on.calls} calls, {on.phases}: p99 {off.p99:.2f} ms -> "
                  f"{on.p99:.2f} ms, loss {off.loss:.3f} % -> {on.loss:.3f} %, CPU {off.cpu:.1f} % -> {on.cpu:.1f} % "
                  f"(the detection processes included), {on.judged} utterances judged, {on.dropped} dropped")
    if args.console:
        k = len(args.phases.split(","))
        for closed, opened in pairs(results, k):
            print(f"console, {opened.workers} workers, {opened.calls} calls, {opened.phases}: p99 {closed.p99:.2f} ms "
                  f"-> {opened.p99:.2f} ms, loss {closed.loss:.3f} % -> {opened.loss:.3f} %, CPU {closed.cpu:.1f} % -> "
                  f"{opened.cpu:.1f} %, {opened.console} viewers made {opened.console_requests} requests "
                  f"({opened.console_failures} failed) besides their live streams")
    print("pkts/s counts every packet the B2BUA received and sent (caller->callee and the echo back);")
    print("cpu % is the B2BUA with its media workers (100 % = one core), us/pkt its CPU time per relayed packet")
    print("(one in, one out); gen % and echo % are the load generator and SIPp's echo on the same cores;")
    print("loss % is over all calls; with a flood, 'others' is the loss of the calls not flooded and 'flooded'")
    print("that of the flooded call; drops: datagrams the kernel dropped for a full receive buffer, by socket owner;")
    print("delay is one traversal (round trip through B2BUA -> SIPp echo -> B2BUA, halved; flooded call excluded),")
    print("from the moment each packet was sent to the kernel's receive stamp of its echo; phases: whether all")
    print("calls send at the same moment of each 20 ms (burst) or at evenly spread moments (spread).")


if __name__ == "__main__":
    main()
