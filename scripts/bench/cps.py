#!/usr/bin/env python3
"""Calls-per-second benchmark: our B2BUA versus the ``sippy`` B2BUA, driven by SIPp.

Topology of every run (all on loopback, UDP)::

    SIPp UAC  --INVITE/ACK/BYE-->  system under test (SUT)  --INVITE/ACK/BYE-->  SIPp UAS
    (-sn uac, -r RATE, -d 1000)     "ours" or "sippy"                            (uas scenario)

For each system and each target rate (``--rates``) the script starts a fresh
SIPp UAS, a fresh SUT process and then a SIPp UAC that places
``rate * duration`` calls at ``rate`` calls/s, each call held for ``--hold-ms``
(default 1000 ms) before the UAC sends BYE.  Fresh ports are used for every
run (except the UAS port of "ours", which its default config routes to:
5080), so nothing leaks from one run into the next.  Every process is bounded
(SIPp ``-timeout``/``-recv_timeout``, our own wait timeouts) and all child
processes are killed at the end, on Ctrl-C and on errors.  Children also get
``PR_SET_PDEATHSIG`` so they die if this script is killed outright.

Methodology, column by column
-----------------------------
attempted
    UAC ``TotalCallCreated`` (last row of the UAC ``-trace_stat`` file, which
    SIPp writes when it exits).
failed
    UAC ``FailedCall(C)``: calls SIPp counted as failed (unexpected message,
    max UDP retransmissions, ``-recv_timeout`` expiry ...).
uac ok
    UAC ``SuccessfulCall(C)``: the whole INVITE/200/ACK/BYE/200 scenario ran.
uas ok
    UAS ``SuccessfulCall(C)``: the call reached the UAS *and* the SUT forwarded
    the BYE and the UAS answered it.  The UAS is stopped with SIGUSR1 (SIPp's
    "finish running calls, then quit") after the UAC is done; note the stock
    UAS scenario ends with a 4 s pause, so calls count as successful only 4 s
    after their BYE.  The value is read from the last row of the UAS stat file,
    written at exit.
achieved cps
    ``uac_ok / t_last_200``, where ``t_last_200`` is the time (from the UAC's
    start) at which the last 200 OK to an INVITE arrived, taken from the
    ``-trace_rtt`` file (its ``Date_ms`` column).  A run that keeps pace
    places its last call at ``(calls - 1) / rate`` and gets its 200 a few ms
    later, so it reports ~= the target rate independently of ``--duration``
    and of the hold time; a SUT that queues (growing setup latency), or whose
    calls fail, reports less.  A few calls that hang until ``-recv_timeout``
    do not stretch it (they show up in ``failed``).  If there is no rtt
    sample at all, ``uac_ok / (uac_elapsed - hold)`` is used, with
    ``uac_elapsed`` from StartTime..CurrentTime of the UAC's final stat row.
setup p50/p99 ms
    From ``-trace_rtt -rtt_freq 1``: the default uac scenario starts response
    time 1 when it sends INVITE and stops it when the 200 OK arrives, and
    ``-rtt_freq 1`` makes SIPp write that value for *every* call into
    ``uac_<pid>_rtt.csv``.  That gives one sample per call, so the
    percentiles are nearest-rank percentiles over all calls that got a 200.
    This is more reliable than the stat file's ResponseTimeRepartition (fixed
    10/20/.../200 ms buckets) or its mean.  Calls that never got a 200 have no
    sample; they show up in ``failed`` instead.  Resolution: SIPp (3.6.1)
    timestamps with CLOCK_MONOTONIC_COARSE, which advances once per kernel
    tick (4 ms on a HZ=250 kernel, as here: ``clock_getres`` says 0.004), so
    samples are multiples of ~4 ms and each is off by up to one tick.  A
    "4.00" p50 means "a few ms" (SIPp's own message log showed 2.7-7.2 ms for
    sippy at low load); differences under ~5 ms are not measurable with this,
    queueing under load (tens to thousands of ms) is.
cpu ms/call, cpu %
    Time on a CPU of every thread of the SUT process and of all its live
    descendants, from ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds), plus
    cutime+cstime (reaped children) from ``/proc/<pid>/stat``.  A process's
    utime+stime would do, but each process's count is cut to whole clock
    ticks (10 ms): with Kamailio's ~15 processes that is up to 0.15 s of a
    ~2 s run, and a short run could read 0.  (A thread that exits between
    the two readings would take its time with it; neither SUT has such
    threads.)  Read right before the UAC starts
    (after the SUT has started and settled) and right after the UAS has
    finished (so all of the SUT's work for these calls is in it; this includes
    a few seconds of SUT idle time, which is negligible for a well-behaved
    event loop).  Divided by ``uac ok``.  ``cpu %`` is the SUT's CPU time
    while the UAC ran over the UAC's wall time (100 % = one core fully busy).
uac cpu %, other cpu % (JSON; "other" also in the table)
    CPU used while the UAC ran by the SIPp UAC (``RUSAGE_CHILDREN`` once it
    is reaped) and by every other process on the machine that is not this
    script or one of its children (SUT, UAS, UAC): per-process deltas of
    ``/proc/*/stat`` (utime+stime+cutime+cstime).  A
    high "other" means the machine was not idle and the run is skewed; a UAC
    near 100 % means SIPp, not the SUT, was the limit.  Both are flagged
    under the table.
sustained
    ``achieved >= 95 % of target`` and ``failed < 1 % of attempted`` and
    ``uas ok >= 99 % of attempted`` (and, only if ``--max-setup-p99-ms`` is
    given, ``setup p99 <= that``).  A SUT that is slightly overloaded queues
    requests and still "sustains" a short run with growing setup latency, so
    use the default 60 s duration (or a p99 bound) for real numbers.

Caveats
-------
* The machine this is meant for has 2 cores, shared by the SUT and both SIPp
  instances; absolute numbers are only comparable between runs on the same
  machine.  SIPp itself uses little CPU at these rates.
* UAS scenario (``--uas-scenario``): by default the UAS runs SIPp's built-in
  ``uas`` scenario (dumped with ``sipp -sd uas``) with a single change: its
  Contact says ``;transport=udp`` instead of ``;transport=UDP`` (SIPp
  upper-cases the keyword).  RFC 3261 makes the value case-insensitive, but
  sippy 2.5.0 compares it case-sensitively and fails to send the BYE to the
  UAS ("BUG: newTransaction() to unsupported transport: UDP"), so with the
  stock scenario no sippy call would ever complete at the UAS.  The same
  scenario is used for every system.  ``--uas-scenario builtin`` runs the stock
  ``-sn uas`` instead (useful to check that our B2BUA handles ``UDP``).
* Response reordering: sippy sends through 3 UDP sender threads, so a 180 and
  the 200 OK sent right after it can leave in the wrong order.  SIPp's stock
  uac scenario then gets the 180 while holding the call and fails the call
  as "UnexpectedMessage" (listed under the table as UAC failures).  That is
  counted as a failure on purpose by default (it is what the SUT put on the
  wire); ``--pause-msg-ign`` makes the UAC ignore messages that arrive while a
  call is held, which hides such late 180s but also any other in-dialog
  message (e.g. 200 OK retransmissions) arriving in that second.
* Everything here runs on a shared machine.  A ``pkill -f sipp`` or
  ``pkill -f "b2bua run"`` elsewhere also stops this script's children (and
  this script itself if its command line says "sippy"); such runs are
  flagged under the table ("stopped from outside?", "SUT exited").  Load
  from other processes is measured and flagged too ("other cpu %").
* sippy is run as ``b2bua_radius -f -u -A 0`` (foreground, no RADIUS auth, no
  accounting) with a static route to the UAS, and SIP message logging off
  (``SIPLOG_BEND=none``); see ``sippy_command``.

Usage
-----
    python scripts/bench/cps.py                       # both systems, default rates, 60 s each
    python scripts/bench/cps.py --duration 10 --rates 50,100 --systems sippy
    python scripts/bench/cps.py --ours-cmd '{python} -m b2bua run --listen udp:127.0.0.1:{port}'
    python scripts/bench/cps.py --json results.json   # also write machine-readable results
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import json
import math
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")

DEFAULT_RATES = "100,200,300,400,600,800"
DEFAULT_OURS_CMD = "{python} -m b2bua run --config config/b2bua.yaml --listen udp:127.0.0.1:{port}"
DEFAULT_SIPPY_VENV = "/tmp/bench-venv-sippy"
DEFAULT_SIPPY_SPEC = "sippy==2.5.0"

# Sustained thresholds (see module docstring).
MIN_ACHIEVED_RATIO = 0.95
MAX_FAILED_RATIO = 0.01
MIN_UAS_OK_RATIO = 0.99


# --------------------------------------------------------------------------- data


@dataclass
class RunResult:
    system: str
    target_rate: int
    achieved_rate: float | None = None
    attempted: int | None = None
    failed: int | None = None
    uac_ok: int | None = None
    uas_ok: int | None = None
    setup_p50_ms: float | None = None
    setup_p99_ms: float | None = None
    cpu_ms_per_call: float | None = None
    cpu_percent: float | None = None
    uac_cpu_percent: float | None = None
    other_cpu_percent: float | None = None
    uac_elapsed_s: float | None = None
    sustained: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class SystemUnderTest:
    name: str
    argv_template: list[str]  # may contain {port}, {uas_port}, {workdir}, {python}
    cwd: Path
    env: dict[str, str]
    fixed_uas_port: int | None = None  # None: allocate a fresh one per run
    version: str | None = None

    def argv(self, port: int, uas_port: int, workdir: Path) -> list[str]:
        values = {"port": port, "uas_port": uas_port, "workdir": workdir, "python": sys.executable}
        return [part.format(**values) for part in self.argv_template]


@dataclass
class Ports:
    sut: int
    uas: int
    uac: int
    uas_ctrl: int
    uac_ctrl: int
    uas_media: int
    uac_media: int


# --------------------------------------------------------------------------- process helpers


_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """Run in the child before exec: die with the parent (even on SIGKILL of the parent)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # pragma: no cover - best effort only
        pass


class ProcessGroup:
    """Children started by this script; each gets its own session/process group."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_child_setup,
            )
        self._procs.append(proc)
        return proc

    @staticmethod
    def exited(proc: subprocess.Popen[bytes]) -> bool:
        """Has ``proc`` exited?  Does not reap it: an unreaped (zombie) leader keeps its process
        group id reserved, so signalling the group afterwards cannot hit a recycled pid."""
        if proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def wait_exited(self, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
        return wait_until(lambda: self.exited(proc), timeout_s, interval_s=0.02)

    def _signal_group(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        if proc.returncode is None:  # not reaped yet, so the group id is still ours
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
        """SIGTERM the process group of ``proc`` (a child we started), then SIGKILL; reap it."""
        if not self.exited(proc):
            self._signal_group(proc, signal.SIGTERM)
            if not self.wait_exited(proc, grace_s):
                self._signal_group(proc, signal.SIGKILL)
                self.wait_exited(proc, 5.0)
        self._signal_group(proc, signal.SIGKILL)  # leftovers in its group, if any
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc, grace_s=2.0)


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the ``(comm)`` field; index 0 is field 3 (state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _read_stat(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to each process still running, newest first; SIGKILL to any not gone 10 s later."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def _threads_cpu_ns(pid: int) -> int | None:
    """Nanoseconds on a CPU of ``pid``'s live threads (the first field of each thread's schedstat)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of one process: its threads' time from schedstat (nanoseconds; see the module's notes on
    "cpu ms/call") and its reaped children's cutime+cstime; 0 once it is gone. The benchmarks' one way of
    reading a process's CPU (media.py, detect.py and console.py use it too)."""
    fields = _read_stat(pid)
    if fields is None:
        return 0.0
    # fields[11..14] are stat fields 14..17: utime stime cutime cstime
    threads_ns = _threads_cpu_ns(pid)
    own = sum(int(x) for x in fields[11:13]) / CLK_TCK if threads_ns is None else threads_ns / 1e9
    return own + sum(int(x) for x in fields[13:15]) / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants (:func:`process_cpu_seconds` of each)."""
    return sum(process_cpu_seconds(pid) for pid in process_tree(root))


def all_process_ticks() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime+stime+cutime+cstime in clock ticks) for every process."""
    out: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _read_stat(int(entry))
            if fields is not None:
                out[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    return out


def _descendants(snapshot: dict[int, tuple[int, int]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in snapshot.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        seen.add(pid)
        todo.extend(children.get(pid, []))
    return seen


class CpuProbe:
    """CPU used while the UAC runs by the SIPp UAC, and by "other" processes: everything that is
    not this script or one of its descendants (SUT, UAS, UAC).  Per-process counters are used
    rather than /proc/stat, whose tick sampling proved unreliable on this VM.  Processes that
    start and finish within the window count through their parent's cutime/cstime."""

    def __init__(self) -> None:
        self.me = os.getpid()
        self.start_procs = all_process_ticks()
        self.start_children = self._children_cpu()

    @staticmethod
    def _children_cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: here, the UAC
        return ru.ru_utime + ru.ru_stime

    def finish(self) -> tuple[float, float]:
        """Call right after the UAC was reaped. Returns (uac_cpu_s, other_cpu_s)."""
        uac = self._children_cpu() - self.start_children
        end_procs = all_process_ticks()
        ours = _descendants(self.start_procs, self.me) | _descendants(end_procs, self.me)
        other_ticks = 0
        for pid, (_, ticks) in end_procs.items():
            if pid not in ours:
                other_ticks += max(0, ticks - self.start_procs.get(pid, (0, 0))[1])
        return uac, other_ticks / CLK_TCK


# --------------------------------------------------------------------------- ports


def bound_ports() -> set[int]:
    """Local ports of UDP sockets and listening TCP sockets (IPv4 and IPv6)."""
    ports: set[int] = set()
    for name in ("udp", "udp6", "tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if name.startswith("tcp") and cols[3] != "0A":  # only LISTEN
                continue
            ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def wait_until(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


class PortAllocator:
    """Hands out a fresh block of ports per run, skipping blocks that are in use."""

    BLOCK = 40

    def __init__(self, base: int) -> None:
        self._next = base

    def allocate(self, fixed_uas: int | None) -> Ports:
        for _ in range(200):
            base = self._next
            self._next += self.BLOCK
            if self._next > 65000:
                self._next = 20000
            wanted = set(range(base, base + 30))
            if wanted & bound_ports():
                continue
            return Ports(sut=base, uas=fixed_uas if fixed_uas else base + 1, uac=base + 2,
                         uas_ctrl=base + 3, uac_ctrl=base + 4, uas_media=base + 10, uac_media=base + 20)
        raise RuntimeError("no free block of ports found")


# --------------------------------------------------------------------------- SIPp output parsing


def last_stat_row(path: Path) -> dict[str, str] | None:
    """Last row of a SIPp ``-trace_stat`` CSV (``;``-separated, header on line 1)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    if len(lines) < 2:
        return None
    header = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    # strict=False: a SIPp killed mid-write leaves a short last row; keep the fields it has
    return dict(zip(header, values, strict=False))


def stat_int(row: dict[str, str] | None, key: str) -> int | None:
    try:
        return int(row[key]) if row is not None else None
    except (KeyError, ValueError):
        return None


def stat_epoch(row: dict[str, str], key: str) -> float | None:
    """StartTime/CurrentTime look like ``2026-11-28<TAB>14:12:26.213540<TAB>1795875146.213540``."""
    try:
        return float(row[key].split("\t")[-1])
    except (KeyError, ValueError, IndexError):
        return None


def failure_reasons(row: dict[str, str] | None) -> dict[str, int]:
    """Non-zero cumulative ``Failed<Reason>(C)`` counters, e.g. {"UnexpectedMessage": 3}."""
    reasons: dict[str, int] = {}
    for key in row or {}:
        if key.startswith("Failed") and key.endswith("(C)") and key != "FailedCall(C)":
            count = stat_int(row, key)
            if count:
                reasons[key[len("Failed"):-len("(C)")]] = count
    return reasons


def read_rtts(workdir: Path) -> list[tuple[float, float]]:
    """Per-call ``(date_ms, response_time_ms)`` of response time 1 (INVITE sent -> 200 received)
    from ``*_rtt.csv``; ``date_ms`` is when the 200 arrived, counted from the UAC's start."""
    samples: list[tuple[float, float]] = []
    for path in sorted(workdir.glob("*_rtt.csv")):
        with open(path, newline="", errors="replace") as fh:
            for row in csv.reader(fh, delimiter=";"):
                if len(row) >= 3 and row[2].strip() == "1":
                    try:
                        samples.append((float(row[0]), float(row[1])))
                    except ValueError:
                        pass
    return samples


def percentile(sorted_samples: list[float], pct: float) -> float | None:
    """Nearest-rank percentile."""
    if not sorted_samples:
        return None
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_samples)))
    return sorted_samples[rank - 1]


# --------------------------------------------------------------------------- systems


def ensure_sippy(venv: Path, spec: str, log) -> Path:
    """Create the throwaway venv with sippy in it if needed; return the b2bua_radius path."""
    exe = venv / "bin" / "b2bua_radius"
    if exe.exists():
        return exe
    log(f"setting up sippy in {venv} ({spec}) ...")
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", spec],
                   check=True)
    if not exe.exists():
        raise RuntimeError(f"{spec} installed but {exe} is missing")
    return exe


def installed_version(venv: Path, dist: str) -> str | None:
    try:
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             f"import importlib.metadata as m; print(m.version({dist!r}))"],
            capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None


def sippy_command(exe: Path) -> list[str]:
    """sippy's full B2BUA, signalling only, every call statically routed to the UAS.

    -f: foreground; -u: no RADIUS authentication; -A 0: no accounting;
    -l/-p: listen address/port; -s: static route host:port for all calls;
    -c: its management (B2BSimpleAPI) unix socket, kept inside the run dir.
    SIP message logging is switched off with SIPLOG_BEND=none (environment).
    """
    return [str(exe), "-f", "-u", "-A", "0", "-l", LOOPBACK, "-p", "{port}",
            "-s", f"{LOOPBACK}:{{uas_port}}", "-c", "{workdir}/b2bua.sock"]


def kamailio_command(exe: str) -> list[str]:
    """Debian's Kamailio as a tm stateful proxy (``scripts/bench/kamailio.cfg``, ports written per run),
    in the foreground (-DD) with its children, logging to stderr (-E): errors only."""
    cfg = Path(__file__).resolve().parent / "kamailio.cfg"
    return ["sh", "-c", f"sed -e s/@PORT@/{{port}}/ -e s/@UAS@/{{uas_port}}/ {cfg} > {{workdir}}/kamailio.cfg "
                        f"&& exec {exe} -DD -E -m 256 -M 16 -f {{workdir}}/kamailio.cfg"]


def _kamailio_version(exe: str) -> str | None:
    try:
        out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=10).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    first = out.splitlines()[0] if out else ""
    return first.split("kamailio", 1)[-1].split()[0] if "kamailio" in first else None


def copy_config(root: Path, folder: Path, change: Callable[[dict], object]) -> Path:
    """``root``'s shipped config copied into ``folder``: b2bua.yaml as ``change`` edits it (a dict, in place),
    its sibling files as they are (those the checkout has: older ones lack some)."""
    import yaml

    conf = yaml.safe_load((root / "config" / "b2bua.yaml").read_text())
    change(conf)
    (folder / "b2bua.yaml").write_text(yaml.safe_dump(conf, allow_unicode=True))
    for name in ("routing.yaml", "holidays.yaml", "abuse_lexicon.yaml"):
        if (root / "config" / name).exists():
            shutil.copy(root / "config" / name, folder / name)
    return folder / "b2bua.yaml"


def signalling_only_config(root: Path = REPO_ROOT, *, media: bool = False, max_new_calls: str = "",
                           workers: int | None = None) -> Path:
    """The shipped config with media anchoring off (SDP passed through), like sippy's -f -u -A 0 run
    (``media``: left on); ``max_new_calls``: the front gate's ``security.max_new_calls_per_s`` (``none``: no
    limit; empty: as shipped)."""
    def change(process: dict) -> None:
        process.setdefault("media", {})["enabled"] = media
        if workers is not None:  # media worker processes (--media-workers)
            process["media"]["workers"] = workers
        if max_new_calls:
            process.setdefault("security", {})["max_new_calls_per_s"] = \
                None if max_new_calls == "none" else float(max_new_calls)

    return copy_config(root, Path(tempfile.mkdtemp(prefix="cps-ours-signalling-")), change)


def bench_config(folder: Path, uas_port: int, metrics: str, *, process: dict | None = None,
                 lab_only: bool = False) -> Path:
    """The shipped config for one benchmark run in ``folder``: every call to SIPp's UAS on ``uas_port``, the
    admin listener on ``metrics``, storage in the folder, warnings only in the log; ``process`` sections laid
    over b2bua.yaml's; ``lab_only``: the lab trunk narrowed to 127.0.0.1, so the rest of 127/8 are outsiders."""
    import yaml

    def change(conf: dict) -> None:
        conf.update(quiet_process(folder), metrics={"address": metrics})
        conf.update(process or {})

    cfg = copy_config(REPO_ROOT, folder, change)
    routing = yaml.safe_load((folder / "routing.yaml").read_text())
    if lab_only:
        for trunk in routing["trunks"]:
            if trunk["name"] == "lab":
                trunk["addresses"] = ["127.0.0.1/32"]
    routing["routes"] = [{"name": "lab", "prefix": "", "targets": [f"sip:{LOOPBACK}:{uas_port}"]}]
    (folder / "routing.yaml").write_text(yaml.safe_dump(routing, allow_unicode=True))
    return cfg


def quiet_process(folder: Path) -> dict:
    """The b2bua.yaml sections a benchmark's process runs with: warnings only, storage in ``folder``, no
    admin socket."""
    return {"logging": {"level": "warning", "format": "text"},
            "storage": {"url": f"sqlite:///{folder / 'cdr.sqlite3'}", "recordings": str(folder / "recordings")},
            "admin": {"socket": None}}


def checkouts(spec: str) -> list[tuple[str, Path]]:
    """``--code base=/tmp/base,new=.`` -> [("base", /tmp/base), ("new", .)]; empty: this checkout, unlabelled."""
    if not spec:
        return [("", REPO_ROOT)]
    out = []
    for item in spec.split(","):
        label, _, path = item.partition("=")
        root = Path(path or label).resolve()
        if not (root / "b2bua").is_dir():
            raise SystemExit(f"--code {item!r}: {root} is not a checkout of this project")
        out.append((label if path else root.name, root))
    return out


def build_systems(args: argparse.Namespace, log) -> list[SystemUnderTest]:
    systems: list[SystemUnderTest] = []
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    for name in names:
        if name in ("ours", "ours-signalling"):
            for label, root in checkouts(args.code):
                env = dict(os.environ)
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
                variants: list[int | None] = [None]
                if name == "ours" and args.media_workers:
                    variants = [int(w) for w in args.media_workers.split(",")]
                for workers in variants:
                    cmd = args.ours_cmd
                    if name == "ours-signalling" or args.max_new_calls or workers is not None:
                        cmd = cmd.replace("config/b2bua.yaml", str(signalling_only_config(
                            root, media=name != "ours-signalling", max_new_calls=args.max_new_calls,
                            workers=workers)))
                    full = name if workers is None else f"{name}-w{workers}"
                    systems.append(SystemUnderTest(
                        name=f"{full}@{label}" if label else full, argv_template=shlex.split(cmd), cwd=root,
                        env=env, fixed_uas_port=args.ours_uas_port or None))
        elif name == "sippy":
            if args.no_sippy:
                continue
            venv = Path(args.sippy_venv)
            exe = ensure_sippy(venv, args.sippy_spec, log)
            env = dict(os.environ, SIPLOG_BEND="none")
            systems.append(SystemUnderTest(
                name="sippy", argv_template=sippy_command(exe), cwd=Path(tempfile.gettempdir()), env=env,
                version=installed_version(venv, "sippy")))
        elif name == "kamailio":
            exe = shutil.which("kamailio")
            if exe is None:
                raise SystemExit("kamailio is not installed: apt install kamailio")
            systems.append(SystemUnderTest(
                name="kamailio", argv_template=kamailio_command(exe), cwd=Path(tempfile.gettempdir()),
                env=dict(os.environ), version=_kamailio_version(exe)))
        else:
            raise SystemExit(f"unknown system {name!r} (known: ours, ours-signalling, sippy, kamailio)")
    return systems


# --------------------------------------------------------------------------- one run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs = ProcessGroup()
        self.ports = PortAllocator(args.base_port)
        self.root = Path(tempfile.mkdtemp(prefix="cps-bench-"))
        self.uas_scenario: Path | None = None
        if args.uas_scenario == "patched":
            self.uas_scenario = self.root / "uas_transport_udp.xml"
            # `sipp -sd` prints the scenario, then exits with status 99: don't check it.
            xml = subprocess.run([args.sipp, "-sd", "uas"], capture_output=True, text=True,
                                 timeout=30).stdout
            patched = xml.replace(";transport=[transport]", ";transport=udp")
            if patched == xml:
                raise RuntimeError("could not patch the uas scenario's Contact transport")
            self.uas_scenario.write_text(patched)

    def log(self, msg: str) -> None:
        if not self.args.quiet:
            print(f"[cps] {msg}", file=sys.stderr, flush=True)

    def cleanup(self) -> None:
        self.procs.stop_all()
        if self.args.keep_logs:
            self.log(f"logs kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def run(self, sut: SystemUnderTest, rate: int) -> RunResult:
        a = self.args
        res = RunResult(system=sut.name, target_rate=rate)
        workdir = self.root / f"{sut.name}-{rate}"
        workdir.mkdir()
        hold_s = a.hold_ms / 1000.0
        calls = max(1, round(rate * a.duration))
        limit = a.limit or max(50, math.ceil(rate * (hold_s + 3)))
        recv_timeout_ms = int(a.recv_timeout * 1000)
        uac_timeout_s = math.ceil(calls / rate + hold_s + a.recv_timeout + 30)

        ports = self.ports.allocate(sut.fixed_uas_port)
        if not wait_until(lambda: ports.uas not in bound_ports(), 30):
            res.error = f"UAS port {ports.uas} still in use"
            return res

        # 1. SIPp UAS (no -m: it runs until we send SIPUSR1; -timeout only as a safety net).
        scenario = ["-sf", str(self.uas_scenario)] if self.uas_scenario else ["-sn", "uas"]
        uas_cmd = [a.sipp, *scenario, "-i", LOOPBACK, "-p", str(ports.uas),
                   "-cp", str(ports.uas_ctrl), "-mp", str(ports.uas_media),
                   "-recv_timeout", str(recv_timeout_ms), "-timeout", str(uac_timeout_s + 120),
                   "-trace_stat", "-stf", "uas_stat.csv", "-fd", "1", "-nostdin"]
        if a.keep_logs:
            uas_cmd.append("-trace_err")
        uas = self.procs.start(uas_cmd, cwd=workdir, log=workdir / "uas.log")
        if not wait_until(lambda: ports.uas in bound_ports() or self.procs.exited(uas), 10) \
                or self.procs.exited(uas):
            res.error = f"SIPp UAS did not start (see {workdir}/uas.log)"
            self.procs.stop(uas)
            return res

        # 2. System under test.
        sut_argv = sut.argv(ports.sut, ports.uas, workdir)
        (workdir / "sut.cmd").write_text(shlex.join(sut_argv) + "\n")
        proc = self.procs.start(sut_argv, cwd=sut.cwd, log=workdir / "sut.log", env=sut.env)
        ready = wait_until(lambda: ports.sut in bound_ports() or self.procs.exited(proc), a.start_timeout)
        if not ready or self.procs.exited(proc):
            exited = self.procs.exited(proc)
            self.procs.stop(proc)
            tail = (workdir / "sut.log").read_text(errors="replace").strip().splitlines()[-3:]
            res.error = (f"SUT did not start listening on {ports.sut}"
                         + (f" (exit {proc.returncode})" if exited else "")
                         + (": " + " | ".join(tail) if tail else ""))
            self.procs.stop(proc)
            self.procs.stop(uas)
            return res
        time.sleep(a.settle)

        # 3. SIPp UAC: `calls` calls at `rate` cps, each held `hold_ms`.
        uac_cmd = [a.sipp, "-sn", "uac", f"{LOOPBACK}:{ports.sut}", "-i", LOOPBACK, "-p", str(ports.uac),
                   "-cp", str(ports.uac_ctrl), "-mp", str(ports.uac_media),
                   "-r", str(rate), "-rp", "1000", "-d", str(a.hold_ms), "-m", str(calls), "-l", str(limit),
                   "-recv_timeout", str(recv_timeout_ms), "-timeout", str(uac_timeout_s),
                   "-trace_stat", "-stf", "uac_stat.csv", "-fd", "1",
                   "-trace_rtt", "-rtt_freq", "1", "-nostdin"]
        if a.pause_msg_ign:
            uac_cmd.append("-pause_msg_ign")
        if a.keep_logs:  # unexpected messages etc. into uac_<pid>_errors.log, for post-mortems
            uac_cmd.append("-trace_err")
        self.log(f"{sut.name} @ {rate} cps: {calls} calls, limit {limit}, "
                 f"ports sut={ports.sut} uas={ports.uas}")
        cpu_before = tree_cpu_seconds(proc.pid)
        probe = CpuProbe()
        t0 = time.monotonic()
        uac = self.procs.start(uac_cmd, cwd=workdir, log=workdir / "uac.log")
        if not self.procs.wait_exited(uac, uac_timeout_s + 30):
            res.notes.append("UAC killed after its timeout")
        self.procs.stop(uac)
        wall_s = time.monotonic() - t0
        cpu_mid = tree_cpu_seconds(proc.pid)
        uac_cpu_s, other_cpu_s = probe.finish()
        res.uac_cpu_percent = 100.0 * uac_cpu_s / wall_s
        res.other_cpu_percent = 100.0 * other_cpu_s / wall_s
        if res.uac_cpu_percent > 80:
            res.notes.append(f"SIPp UAC used {res.uac_cpu_percent:.0f}% of a core: the load generator "
                             "may be the limit")
        if res.other_cpu_percent > a.other_cpu_warn:
            res.notes.append(f"other processes used {res.other_cpu_percent:.0f}% of a core during the run "
                             "(machine not idle: numbers are skewed)")

        # 4. Let the UAS finish its running calls (incl. the 4 s end pause), then read the SUT CPU.
        if self.procs.exited(uas):
            res.notes.append("UAS exited before the UAC finished (stopped from outside?)")
        else:
            uas.send_signal(signal.SIGUSR1)
        if not self.procs.wait_exited(uas, a.recv_timeout + 15):
            res.notes.append("UAS did not finish by itself; killed (UAS counts may lag by <= 1 s)")
        sut_alive = not self.procs.exited(proc)
        cpu_after = tree_cpu_seconds(proc.pid) if sut_alive else None
        self.procs.stop(uas)
        self.procs.stop(proc)
        if not sut_alive:
            code = proc.returncode
            killed = code is not None and code < 0
            how = f"killed by {signal.Signals(-code).name}" if killed else f"exit {code}"
            res.notes.append(f"SUT exited during the run ({how}; see its log with --keep-logs)")

        # 5. Collect.
        uac_row = last_stat_row(workdir / "uac_stat.csv")
        uas_row = last_stat_row(workdir / "uas_stat.csv")
        if uac_row is None:
            res.error = f"no UAC statistics (see {workdir}/uac.log)"
            return res
        res.attempted = stat_int(uac_row, "TotalCallCreated")
        res.failed = stat_int(uac_row, "FailedCall(C)")
        res.uac_ok = stat_int(uac_row, "SuccessfulCall(C)")
        res.uas_ok = stat_int(uas_row, "SuccessfulCall(C)")
        start, end = stat_epoch(uac_row, "StartTime"), stat_epoch(uac_row, "CurrentTime")
        res.uac_elapsed_s = (end - start) if start and end and end > start else wall_s
        samples = read_rtts(workdir)
        if samples:
            active_s = max(date_ms for date_ms, _ in samples) / 1000.0
        else:
            active_s = res.uac_elapsed_s - hold_s
        if res.uac_ok is not None:
            res.achieved_rate = res.uac_ok / max(active_s, 1e-3)
        rtts = sorted(rt for _, rt in samples)
        res.setup_p50_ms = percentile(rtts, 50)
        res.setup_p99_ms = percentile(rtts, 99)
        res.cpu_percent = 100.0 * (cpu_mid - cpu_before) / wall_s
        if cpu_after is not None and res.uac_ok:
            res.cpu_ms_per_call = 1000.0 * (cpu_after - cpu_before) / res.uac_ok
        if res.attempted and res.achieved_rate is not None and res.failed is not None \
                and res.uas_ok is not None:
            res.sustained = (res.achieved_rate >= MIN_ACHIEVED_RATIO * rate
                             and res.failed < MAX_FAILED_RATIO * res.attempted
                             and res.uas_ok >= MIN_UAS_OK_RATIO * res.attempted)
            if a.max_setup_p99_ms and (res.setup_p99_ms is None or res.setup_p99_ms > a.max_setup_p99_ms):
                res.sustained = False
        reasons = failure_reasons(uac_row)
        if reasons:
            res.notes.append("UAC failures: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
        uas_reasons = failure_reasons(uas_row)
        if uas_reasons:
            res.notes.append("UAS failures: " + ", ".join(f"{k} {v}" for k, v in uas_reasons.items()))
        if res.attempted is not None and res.attempted < calls:
            res.notes.append(f"UAC created only {res.attempted}/{calls} calls (stopped early: "
                             "global timeout, or stopped from outside?)")
        open_at_uas = stat_int(uas_row, "CurrentCall")
        if open_at_uas:
            res.notes.append(f"UAS ended with {open_at_uas} calls still open (stopped from outside?)")
        return res


# --------------------------------------------------------------------------- output


COLUMNS: list[tuple[str, str]] = [
    ("system", "system"), ("target", "target_rate"), ("achieved", "achieved_rate"),
    ("attempted", "attempted"), ("failed", "failed"), ("uac ok", "uac_ok"), ("uas ok", "uas_ok"),
    ("setup p50 ms", "setup_p50_ms"), ("setup p99 ms", "setup_p99_ms"),
    ("cpu ms/call", "cpu_ms_per_call"), ("cpu %", "cpu_percent"), ("other cpu %", "other_cpu_percent"),
    ("sustained", "sustained"),
]


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def render_table(results: list[RunResult]) -> str:
    rows = [[_fmt(getattr(r, attr)) for _, attr in COLUMNS] for r in results]
    heads = [h for h, _ in COLUMNS]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(heads)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    out = [line(heads), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in rows]
    for r in results:
        for msg in ([f"error: {r.error}"] if r.error else []) + r.notes:
            out.append(f"  ! {r.system} @ {r.target_rate}: {msg}")
    return "\n".join(out)


def best_sustained(results: list[RunResult]) -> dict[str, int | None]:
    best: dict[str, int | None] = {}
    for r in results:
        best.setdefault(r.system, None)
        if r.sustained and (best[r.system] is None or r.target_rate > best[r.system]):
            best[r.system] = r.target_rate
    return best


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default="ours-signalling,ours,sippy",
                   help="comma-separated: ours-signalling (media off), ours (shipped config, RTP anchored), "
                        "sippy (default: %(default)s)")
    p.add_argument("--rates", default=DEFAULT_RATES, help="target call rates, cps (default: %(default)s)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds of call generation per rate (default: 60)")
    p.add_argument("--hold-ms", type=int, default=1000, help="call hold time, SIPp -d (default: 1000)")
    p.add_argument("--limit", type=int, default=0,
                   help="SIPp -l concurrent call limit; 0 = max(50, rate*(hold+3s)) (default: 0)")
    p.add_argument("--recv-timeout", type=float, default=10.0,
                   help="SIPp -recv_timeout in seconds: a call waiting longer fails (default: 10)")
    p.add_argument("--settle", type=float, default=1.0, help="seconds between SUT ready and UAC start")
    p.add_argument("--start-timeout", type=float, default=20.0, help="seconds to wait for the SUT to listen")
    p.add_argument("--cooldown", type=float, default=1.0, help="seconds between runs")
    p.add_argument("--max-setup-p99-ms", type=float, default=0.0,
                   help="also require setup p99 <= this for 'sustained' (0 = no latency bound, the default)")
    p.add_argument("--stop-after-unsustained", type=int, default=0, metavar="N",
                   help="skip a system's higher rates after N consecutive unsustained rates (0 = never)")
    p.add_argument("--other-cpu-warn", type=float, default=15.0, metavar="PCT",
                   help="flag runs where unrelated processes used more than PCT%% of a core (default: 15)")
    p.add_argument("--base-port", type=int, default=21000, help="first port of the fresh-port range")
    p.add_argument("--sipp", default=shutil.which("sipp") or "/usr/bin/sipp", help="SIPp binary")
    p.add_argument("--uas-scenario", choices=("patched", "builtin"), default="patched",
                   help="patched: built-in uas with Contact ;transport=udp (lower case); "
                        "builtin: plain -sn uas (default: %(default)s, see docstring)")
    p.add_argument("--pause-msg-ign", action="store_true",
                   help="pass -pause_msg_ign to the UAC: ignore messages arriving while a call is held, "
                        "e.g. a 180 that arrives after the 200 (see docstring)")
    p.add_argument("--ours-cmd", default=DEFAULT_OURS_CMD,
                   help="command for 'ours', run from the repo root; placeholders {port}, {uas_port}, "
                        "{workdir}, {python} (default: %(default)s)")
    p.add_argument("--ours-uas-port", type=int, default=5080,
                   help="UAS port 'ours' routes to (its config's default target); 0 = fresh port per run")
    p.add_argument("--code", default="",
                   help="checkouts of ours to compare in one run, label=path,... (e.g. base=/tmp/base,new=.; "
                        "default: this one)")
    p.add_argument("--media-workers", default="", metavar="N,M",
                   help="the ours system once per media.workers value, e.g. 0,2 (default: the shipped setting)")
    p.add_argument("--max-new-calls", default="", metavar="N|none",
                   help="our front gate's security.max_new_calls_per_s for this run (default: as shipped)")
    p.add_argument("--no-sippy", action="store_true", help="skip the sippy system")
    p.add_argument("--sippy-venv", default=DEFAULT_SIPPY_VENV, help="venv for sippy (created if missing)")
    p.add_argument("--sippy-spec", default=DEFAULT_SIPPY_SPEC, help="pip requirement for sippy")
    p.add_argument("--json", metavar="PATH", help="also write results as JSON to PATH ('-' = stdout, "
                   "then the table goes to stderr)")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the per-run work dirs (SIPp/SUT logs, plus SIPp -trace_err error logs)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    args = p.parse_args(argv)
    try:
        args.rate_list = [int(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        p.error("--rates must be comma-separated integers")
    if not args.rate_list or min(args.rate_list) <= 0:
        p.error("--rates needs positive integers")
    if args.duration <= 0:
        p.error("--duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_sigterm(signum, frame):  # turn SIGTERM/SIGHUP into the same clean-up path as Ctrl-C
        print(f"\n[cps] got {signal.Signals(signum).name}", file=sys.stderr)
        raise KeyboardInterrupt

    # Also SIGINT explicitly: a shell starting us in the background may have set it to "ignore".
    signal.signal(signal.SIGINT, on_sigterm)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)

    bench = Bench(args)
    results: list[RunResult] = []
    systems: list[SystemUnderTest] = []
    interrupted = False
    try:
        systems = build_systems(args, bench.log)
        for sut in systems:
            unsustained = 0
            for rate in args.rate_list:
                if args.stop_after_unsustained and unsustained >= args.stop_after_unsustained:
                    bench.log(f"{sut.name}: skipping {rate} cps after {unsustained} unsustained rates")
                    continue
                try:
                    res = bench.run(sut, rate)
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    res = RunResult(system=sut.name, target_rate=rate, error=f"{type(exc).__name__}: {exc}")
                    bench.procs.stop_all()
                results.append(res)
                bench.log(f"  -> achieved {_fmt(res.achieved_rate)} cps, ok {_fmt(res.uac_ok)}/"
                          f"{_fmt(res.attempted)}, uas ok {_fmt(res.uas_ok)}, "
                          f"sustained {_fmt(res.sustained)}" + (f", error: {res.error}" if res.error else ""))
                unsustained = 0 if res.sustained else unsustained + 1
                if res.error and res.error.startswith("SUT did not start"):
                    bench.log(f"{sut.name}: does not start, skipping its other rates")
                    break
                time.sleep(args.cooldown)
    except KeyboardInterrupt:
        interrupted = True
        print("\n[cps] interrupted, stopping children", file=sys.stderr)
    finally:
        bench.cleanup()

    table_out = sys.stderr if args.json == "-" else sys.stdout
    print(render_table(results), file=table_out)
    best = best_sustained(results)
    print("", file=table_out)
    for name, rate in best.items():
        print(f"highest sustained rate, {name}: {rate if rate is not None else 'none'}"
              + (" cps" if rate is not None else ""), file=table_out)

    if args.json:
        doc = {
            "params": {k: v for k, v in vars(args).items() if k not in ("json",)},
            "systems": {s.name: {"command": " ".join(s.argv_template), "version": s.version}
                        for s in systems},
            "cpu_count": os.cpu_count(),
            "results": [asdict(r) for r in results],
            "highest_sustained": best,
            "interrupted": interrupted,
        }
        text = json.dumps(doc, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
