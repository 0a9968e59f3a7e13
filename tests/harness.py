"""Helpers for end-to-end tests: a real B2BUA process and real SIPp peers on loopback."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[1]
SIPP = shutil.which("sipp")
SCENARIOS = ROOT / "scripts" / "sipp"


def bench_module(name: str) -> ModuleType:
    """``scripts/bench/<name>.py`` loaded by its path, as ``bench_<name>``. Not through ``sys.path``: that
    folder has a ``media.py``, which a media worker process started later would import instead of the
    ``media`` package (spawned children look names up afresh on the parent's path)."""
    key = f"bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "scripts" / "bench" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # (before it runs: its dataclasses look their module up)
        spec.loader.exec_module(module)
    return sys.modules[key]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                with socket.socket(family, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
            except OSError:
                continue
            if port < 60000:
                return port
    raise RuntimeError("no free port")


def write_config(directory: Path, *, routing: dict | None = None, sip: dict | None = None,
                 logging: dict | None = None) -> Path:
    """Write b2bua.yaml + routing.yaml derived from the shipped config into ``directory``."""
    base = yaml.safe_load((ROOT / "config" / "b2bua.yaml").read_text())
    base_routing = yaml.safe_load((ROOT / "config" / "routing.yaml").read_text())
    base["sip"].update(sip or {})
    base["logging"] = {"level": "info", "format": "text", **(logging or {})}
    base["metrics"] = {"address": None}  # tests that scrape set their own port
    base["shutdown"] = {"drain_s": 2, "bye_grace_s": 2}  # tests end their calls; a stop never waits long
    if base.get("media", {}).get("workers") is None:  # the shipped default (one per core): tests choose their own
        base.setdefault("media", {})["workers"] = 0  # in process unless a test asks (test_e2e_media runs the default)
    base_routing.update(routing or {})
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "b2bua.yaml").write_text(yaml.safe_dump(base, allow_unicode=True))
    (directory / "routing.yaml").write_text(yaml.safe_dump(base_routing, allow_unicode=True))
    shutil.copy(ROOT / "config" / "holidays.yaml", directory / "holidays.yaml")
    shutil.copy(ROOT / "config" / "abuse_lexicon.yaml", directory / "abuse_lexicon.yaml")
    return directory / "b2bua.yaml"


def make_cert(tmp: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` and 127.0.0.1 (openssl): (certificate, key)."""
    key, cert = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name},IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


class B2BUAProcess:
    """``python -m b2bua run`` in a subprocess, its log captured to a file."""

    def __init__(self, config: Path, listen: list[str], log_path: Path):
        self.config = config
        self.listen = listen
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> B2BUAProcess:
        # B2BUA_TEST_PREFIX: a command the process runs under (tests/test_netem.py: ``ip netns exec NS``)
        args = [*shlex.split(os.environ.get("B2BUA_TEST_PREFIX", "")), sys.executable, "-m", "b2bua", "run",
                "--config", str(self.config)]
        for item in self.listen:
            args += ["--listen", item]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"b2bua exited: {self.log()}")
            if "b2bua ready" in self.log():
                return self
            time.sleep(0.05)
        self.proc.kill()  # never left behind
        self.proc.wait()
        self._log.close()
        raise RuntimeError(f"b2bua did not start within 30 s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def settle(self, timeout: float = 5.0) -> None:
        """Wait until every call the log shows starting has also ended (BYE answers in flight)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if log.count(" start from=") <= log.count(" end status="):
                return
            time.sleep(0.05)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.settle()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@contextmanager
def b2bua(tmp: Path, *, uas_port: int, transports: tuple[str, ...] = ("udp", "tcp"),
          routing: dict | None = None, sip: dict | None = None, host: str = "127.0.0.1",
          target_transport: str = "udp") -> Iterator[tuple[B2BUAProcess, int]]:
    """Run the B2BUA routing every call to ``host:uas_port``; yields (process, sip port)."""
    port = free_port(host)
    h = f"[{host}]" if ":" in host else host
    t = "" if target_transport == "udp" else f";transport={target_transport}"
    routes = {"routes": [{"name": "lab", "prefix": "", "targets": [f"sip:{h}:{uas_port}{t}"]}]}
    cfg = write_config(tmp / "config", routing={**routes, **(routing or {})}, sip=sip)
    proc = B2BUAProcess(cfg, [f"{tr}:{h}:{port}" for tr in transports], tmp / "b2bua.log").start()
    try:
        yield proc, port
    finally:
        proc.stop()


def sipp(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run SIPp to completion (``-nostdin``), failing the test on a hang."""
    assert SIPP, "sipp is not installed (Debian package sip-tester)"
    return subprocess.run([SIPP, *args, "-nostdin"], cwd=cwd, capture_output=True, timeout=timeout)


@contextmanager
def sipp_background(args: list[str], cwd: Path) -> Iterator[subprocess.Popen]:
    """A SIPp peer (usually the UAS) for the duration of a test."""
    assert SIPP, "sipp is not installed (Debian package sip-tester)"
    proc = subprocess.Popen([SIPP, *args, "-nostdin"], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sipp_stats(cwd: Path) -> dict[str, int]:
    """Last line of the ``-trace_stat`` CSV SIPp wrote in ``cwd``, as counters."""
    files = sorted(cwd.glob("*_.csv"))
    assert files, f"no SIPp stat file in {cwd}: {os.listdir(cwd)}"
    lines = files[-1].read_text().strip().splitlines()
    header = lines[0].split(";")
    values = lines[-1].split(";")
    out: dict[str, int] = {}
    for k, v in zip(header, values, strict=False):  # a killed SIPp may leave a short last row
        if v.isdigit():
            out[k] = int(v)
    return out


def options(port: int, host: str = "127.0.0.1") -> str:
    """An OPTIONS to the B2BUA at ``host:port`` from a fresh UDP socket: the answer's text."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        s.settimeout(5)
        me = s.getsockname()[1]
        tag = time.monotonic_ns()
        s.sendto((f"OPTIONS sip:ping@{host}:{port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP {host}:{me};branch=z9hG4bK-opt-{tag}\r\n"
                  f"From: <sip:probe@{host}:{me}>;tag=p1\r\nTo: <sip:ping@{host}>\r\n"
                  f"Call-ID: probe-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                  "Content-Length: 0\r\n\r\n").encode(), (host, port))
        return s.recv(4096).decode(errors="replace")
