"""Post-call conversion of recordings to a compact format (Opus in Ogg, or MP3) with PyAV.

Runs in a worker process (the index submits it there), never on the media path. The WAV is
replaced only once the converted file is complete, so a crash mid-conversion keeps the WAV.
"""

from __future__ import annotations

import os
from pathlib import Path

#: format -> (file suffix, encoder, bit rate)
FORMATS = {"opus": (".ogg", "libopus", 24_000), "mp3": (".mp3", "libmp3lame", 32_000)}


def convert(wav: str, fmt: str) -> str:
    """Encode ``wav`` (8 kHz stereo) as ``fmt``; returns the new file's path and removes the WAV."""
    import av  # noqa: PLC0415
    from av.audio.stream import AudioStream  # noqa: PLC0415

    suffix, codec, rate = FORMATS[fmt]
    src = Path(wav)
    dst = src.with_suffix(suffix)
    tmp = dst.with_name(dst.name + ".part")
    with av.open(str(src)) as inp, av.open(str(tmp), "w", format="ogg" if fmt == "opus" else "mp3") as out:
        stream = out.add_stream(codec, rate=8000, layout="stereo")
        # add_stream is typed by the codec name (a str here: any kind of stream); FORMATS holds audio encoders
        assert isinstance(stream, AudioStream), f"{codec} is not an audio encoder"
        stream.bit_rate = rate
        resampler = av.AudioResampler(format=stream.format.name, layout="stereo", rate=8000)
        for frame in inp.decode(audio=0):
            frame.pts = None
            for rf in resampler.resample(frame):
                for packet in stream.encode(rf):
                    out.mux(packet)
        for rf in resampler.resample(None):
            for packet in stream.encode(rf):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    os.replace(tmp, dst)
    src.unlink()
    return str(dst)
