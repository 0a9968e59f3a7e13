"""SDP (RFC 8866) parsing and serialization, with the views offer/answer needs (RFC 3264)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SipError


class SdpError(SipError):
    """Malformed SDP: 400 for a request body we cannot read (RFC 3261 §21.4.1)."""

    status = 400
    reason = "Bad Request"


DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass(slots=True)
class Codec:
    """One payload type of an m= line, from rtpmap/fmtp or the static table (RFC 3551)."""

    pt: int
    name: str
    clock: int
    channels: int = 1
    fmtp: str | None = None

    @property
    def key(self) -> str:
        return self.name.lower()


STATIC = {0: Codec(0, "PCMU", 8000), 8: Codec(8, "PCMA", 8000), 9: Codec(9, "G722", 8000),
          18: Codec(18, "G729", 8000), 3: Codec(3, "GSM", 8000), 4: Codec(4, "G723", 8000)}


@dataclass(slots=True)
class Media:
    """One m= section."""

    kind: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: str | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)  # other lines (b=, a=, i=, k=) in order

    def attributes(self, name: str) -> list[str]:
        prefix = name + ":"
        return [v[len(prefix):] if v.startswith(prefix) else "" for t, v in self.lines
                if t == "a" and (v == name or v.startswith(prefix))]

    def attribute(self, name: str) -> str | None:
        values = self.attributes(name)
        return values[0] if values else None

    @property
    def direction(self) -> str:
        for t, v in self.lines:
            if t == "a" and v in DIRECTIONS:
                return v
        return "sendrecv"

    @property
    def ptime(self) -> int | None:
        v = self.attribute("ptime")
        try:
            return int(v) if v else None
        except ValueError:
            return None

    def codecs(self) -> list[Codec]:
        """Codecs in preference order (RFC 3264 §5.1)."""
        rtpmap: dict[int, Codec] = {}
        for v in self.attributes("rtpmap"):
            pt_text, _, enc = v.partition(" ")
            parts = enc.strip().split("/")
            if not pt_text.isdigit() or not parts[0]:
                raise SdpError(f"bad rtpmap {v!r}")
            pt = int(pt_text)
            try:
                clock = int(parts[1])
            except (ValueError, IndexError):
                clock = STATIC[pt].clock if pt in STATIC else 8000  # tolerate "31 LPC" (RFC 4475 §3.1.1.1)
            try:
                channels = int(parts[2]) if len(parts) > 2 else 1
            except ValueError:
                channels = 1
            rtpmap[pt] = Codec(pt, parts[0], clock, channels)
        fmtp: dict[int, str] = {}
        for v in self.attributes("fmtp"):
            pt_text, _, params = v.partition(" ")
            if pt_text.isdigit():
                fmtp[int(pt_text)] = params.strip()
        out = []
        for f in self.formats:
            if not f.isdigit():
                continue
            pt = int(f)
            codec = rtpmap.get(pt) or STATIC.get(pt)
            if codec is None:
                continue
            out.append(Codec(codec.pt, codec.name, codec.clock, codec.channels, fmtp.get(pt)))
        return out

    def set_direction(self, direction: str) -> None:
        self.lines = [(t, v) for t, v in self.lines if not (t == "a" and v in DIRECTIONS)]
        self.lines.append(("a", direction))


@dataclass(slots=True)
class SessionDescription:
    """A whole SDP body. Unknown lines are kept in order."""

    origin: list[str]
    name: str = "-"
    connection: str | None = None
    session_lines: list[tuple[str, str]] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)

    @classmethod
    def parse(cls, body: bytes) -> SessionDescription:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not UTF-8") from None
        lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
        if not lines or lines[0].strip() != "v=0":
            raise SdpError("SDP must start with v=0")
        origin: list[str] | None = None
        sdp = cls(origin=[])
        current: Media | None = None
        for ln in lines[1:]:
            if len(ln) < 2 or ln[1] != "=" or not ln[0].isalpha():
                raise SdpError(f"bad SDP line {ln[:40]!r}")
            t, v = ln[0], ln[2:].strip()
            if t == "m":
                parts = v.split()
                if len(parts) < 4:
                    raise SdpError(f"bad m= line {v!r}")
                port_text, _, count = parts[1].partition("/")
                if not port_text.isdigit() or int(port_text) > 65535 or (count and not count.isdigit()):
                    raise SdpError(f"bad port in m= line {v!r}")
                current = Media(parts[0], int(port_text), parts[2], parts[3:], int(count) if count else None)
                sdp.media.append(current)
            elif t == "o" and current is None:
                origin = v.split()
                if len(origin) != 6:
                    raise SdpError(f"bad o= line {v!r}")
            elif t == "s" and current is None:
                sdp.name = v or "-"
            elif t == "c":
                parts = v.split()
                if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                    raise SdpError(f"bad c= line {v!r}")
                addr = parts[2].split("/")[0]
                if current is None:
                    sdp.connection = addr
                else:
                    current.connection = addr
            elif current is None:
                sdp.session_lines.append((t, v))
            else:
                current.lines.append((t, v))
        if origin is None:
            raise SdpError("SDP without o= line")
        sdp.origin = origin
        for m in sdp.media:
            if m.port and (m.connection or sdp.connection) is None:
                raise SdpError("media without a connection address (c=)")
            m.codecs()  # validates rtpmap lines
        return sdp

    def address(self, media: Media) -> str | None:
        return media.connection or self.connection

    def serialize(self) -> bytes:
        out = ["v=0", "o=" + " ".join(self.origin), f"s={self.name}"]
        if self.connection:
            out.append(f"c=IN {'IP6' if ':' in self.connection else 'IP4'} {self.connection}")
        out += [f"{t}={v}" for t, v in self.session_lines if t in ("b", "t", "r", "z", "k", "a", "i", "u", "e", "p")]
        if not any(t == "t" for t, _ in self.session_lines):
            out.insert(4 if self.connection else 3, "t=0 0")
        for m in self.media:
            port = f"{m.port}/{m.port_count}" if m.port_count else str(m.port)
            out.append(f"m={m.kind} {port} {m.proto} {' '.join(m.formats)}")
            if m.connection:
                out.append(f"c=IN {'IP6' if ':' in m.connection else 'IP4'} {m.connection}")
            out += [f"{t}={v}" for t, v in m.lines]
        return ("\r\n".join(out) + "\r\n").encode()


def find_sdp(content_type: str | None, body: bytes) -> bytes | None:
    """The SDP in a body: the body itself, or the application/sdp part of a multipart body."""
    if not body or not content_type:
        return None
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/sdp":
        return body
    if ctype.startswith("multipart/"):
        marker = "boundary="
        low = content_type.lower()
        if marker not in low:
            return None
        boundary = content_type[low.index(marker) + len(marker):].split(";", 1)[0].strip().strip('"')
        for part in body.split(b"--" + boundary.encode()):
            head, sep, content = part.partition(b"\r\n\r\n")
            if sep and b"application/sdp" in head.lower():
                return content.rstrip(b"\r\n") + b"\r\n"
    return None
