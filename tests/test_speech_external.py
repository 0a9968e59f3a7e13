"""media.speech.external against real HTTP servers on 127.0.0.1: a transcript, a 500, a hang."""

from __future__ import annotations

import io
import json
import threading
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from media.speech.engine import Transcriber, Transcript
from media.speech.external import ExternalError, ExternalOptions, ExternalStats, ExternalTranscriber, multipart_body

AUDIO = (np.sin(2 * np.pi * 300 * np.arange(16000) / 16000) * 0.3).astype(np.float32)  # 1 s


@dataclass
class Server:
    """A test server: what it answers (``mode``) and what it was asked."""

    mode: str
    answer: dict[str, object] = field(default_factory=dict)
    hits: int = 0
    forms: list[dict[str, object]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""


def parse_form(content_type: str, body: bytes) -> dict[str, object]:
    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    form: dict[str, object] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        form[str(name)] = payload if part.get_filename() else payload.decode()
    return form


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    state = Server(mode=request.param)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            state.hits += 1
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/v1/audio/transcriptions":
                self.send_error(404)
                return
            state.forms.append(parse_form(self.headers["Content-Type"], body))
            if state.mode == "hang":
                state.release.wait(10)
                return
            if state.mode in ("500", "400"):
                self.send_error(int(state.mode))
                return
            data = json.dumps(state.answer or {"text": " 안녕하세요 민원실입니다 "}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


class Stub:
    """A fallback engine that says who answered."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def name(self) -> str:
        return "stub"

    def transcribe(self, samples_16k: np.ndarray) -> Transcript:
        self.calls += 1
        return Transcript("fallback", "ko", -0.1, 0.0, "stub", "0", 0.0, samples_16k.size / 16000)


def engine(server: Server, fallback: Transcriber | None = None, response_format: str = "verbose_json"
           ) -> ExternalTranscriber:
    options = ExternalOptions(url=server.url, timeout_s=0.5, retries=1, backoff_s=0.01, response_format=response_format)
    return ExternalTranscriber(options, fallback)


@pytest.mark.parametrize("server", ["ok"], indirect=True)
def test_transcript_from_the_server(server: Server) -> None:
    stub = Stub()
    e = engine(server, stub, response_format="json")
    t = e.transcribe(AUDIO)
    assert (t.text, t.engine, t.language, t.audio_seconds) == ("안녕하세요 민원실입니다", "external", "ko", 1.0)
    assert e.stats() == ExternalStats(requests=1, failures=0, fallbacks=0) and stub.calls == 0
    form = server.forms[0]
    assert (form["model"], form["language"], form["response_format"]) == ("whisper-1", "ko", "json")
    assert isinstance(form["file"], bytes)
    with wave.open(io.BytesIO(form["file"])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (16000, 1, 2, 16000)
        pcm = np.frombuffer(w.readframes(16000), dtype="<i2")
    np.testing.assert_allclose(pcm / 32768, AUDIO, atol=1 / 32768)


@pytest.mark.parametrize("server", ["ok"], indirect=True)
def test_verbose_json_segments_pass_the_hallucination_filter(server: Server) -> None:
    server.answer = {"text": "x", "language": "korean", "segments": [
        {"text": " 여보세요", "avg_logprob": -0.3, "no_speech_prob": 0.01, "compression_ratio": 1.1},
        {"text": " 시청해주셔서 감사합니다", "avg_logprob": -0.4, "no_speech_prob": 0.9, "compression_ratio": 1.0},
        {"text": " 영상에서 영상에서", "avg_logprob": -1.6, "no_speech_prob": 0.1, "compression_ratio": 1.2},
    ]}
    t = engine(server).transcribe(AUDIO)
    assert (t.text, t.language, t.dropped, t.avg_logprob, t.no_speech_prob) == ("여보세요", "korean", 2, -0.3, 0.01)
    assert server.forms[0]["response_format"] == "verbose_json"


@pytest.mark.parametrize("server", ["ok"], indirect=True)
@pytest.mark.parametrize("answer", [{"txt": "x"}, {"text": "x", "segments": [{"avg_logprob": "low"}]},
                                    {"text": "x", "segments": "none"}])
def test_a_malformed_answer_falls_back(server: Server, answer: dict[str, object]) -> None:
    server.answer = answer
    stub = Stub()
    e = engine(server, stub)
    assert e.transcribe(AUDIO).engine == "stub"
    assert server.hits == 1 and e.stats() == ExternalStats(requests=1, failures=1, fallbacks=1)


@pytest.mark.parametrize("server", ["500"], indirect=True)
def test_server_error_is_retried_then_falls_back(server: Server) -> None:
    stub = Stub()
    e = engine(server, stub)
    t = e.transcribe(AUDIO)
    assert (t.text, t.engine) == ("fallback", "stub")
    assert server.hits == 2 and stub.calls == 1
    assert e.stats() == ExternalStats(requests=2, failures=2, fallbacks=1)


@pytest.mark.parametrize("server", ["500"], indirect=True)
def test_no_fallback_raises(server: Server) -> None:
    e = engine(server, None)
    with pytest.raises(ExternalError, match="HTTP 500"):
        e.transcribe(AUDIO)
    assert e.stats() == ExternalStats(requests=2, failures=2, fallbacks=0)


@pytest.mark.parametrize("server", ["400"], indirect=True)
def test_client_error_is_not_retried(server: Server) -> None:
    stub = Stub()
    e = engine(server, stub)
    assert e.transcribe(AUDIO).engine == "stub"
    assert server.hits == 1 and e.stats() == ExternalStats(requests=1, failures=1, fallbacks=1)


@pytest.mark.parametrize("server", ["hang"], indirect=True)
def test_a_hanging_server_times_out_and_falls_back(server: Server) -> None:
    stub = Stub()
    e = engine(server, stub)
    t0 = time.monotonic()
    t = e.transcribe(AUDIO)
    elapsed = time.monotonic() - t0
    assert t.engine == "stub" and stub.calls == 1
    assert 0.9 <= elapsed < 3.0, elapsed  # two attempts of 0.5 s
    assert server.hits == 2 and e.stats() == ExternalStats(requests=2, failures=2, fallbacks=1)


def test_nobody_listening_falls_back() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: connection refused
    stub = Stub()
    e = ExternalTranscriber(ExternalOptions(url=f"http://127.0.0.1:{port}", timeout_s=0.5, retries=2, backoff_s=0.01),
                            stub)
    assert e.transcribe(AUDIO).engine == "stub"
    assert e.stats() == ExternalStats(requests=3, failures=3, fallbacks=1)


def test_multipart_body_is_well_formed() -> None:
    body, content_type = multipart_body({"model": "m", "language": "ko"}, "file", "a.wav", "audio/wav", b"RIFF\r\n--x")
    form = parse_form(content_type, body)
    assert form == {"model": "m", "language": "ko", "file": b"RIFF\r\n--x"}


def test_endpoint_and_format_checks() -> None:
    assert ExternalOptions(url="http://h:1/").endpoint == "http://h:1/v1/audio/transcriptions"
    assert ExternalOptions(url="http://h:1/v1/audio/transcriptions").endpoint == "http://h:1/v1/audio/transcriptions"
    with pytest.raises(ValueError, match="response_format"):
        ExternalTranscriber(ExternalOptions(url="http://h:1", response_format="srt"))
