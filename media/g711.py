"""G.711 µ-law and A-law (ITU-T G.711) through numpy lookup tables.

Decoding is one 256-entry table per law; encoding is one 65536-entry table
indexed by the 16-bit sample, so whole ``(streams, samples)`` blocks convert
with a single fancy-indexing operation and no Python loop per sample.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_BIAS = 0x84


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


def _ulaw_encode_table() -> np.ndarray:
    """The 14-bit reference encoder (G.711 Appendix, Sun g711.c) for every int16."""
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 33
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), mag)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F)) ^ mask
    return _reindex(code.astype(np.uint8))


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    sign = np.where(pcm >= 0, 0x80, 0)
    mag = np.minimum(np.where(pcm >= 0, pcm, -pcm - 1), 0x7FFF)
    exponent = np.where(mag < 256, 0, np.clip(np.floor(np.log2(np.maximum(mag, 1))).astype(np.int32) - 7, 1, 7))
    mantissa = np.where(exponent == 0, (mag >> 4) & 0x0F, (mag >> (exponent + 3)) & 0x0F)
    code = (sign | (exponent << 4) | mantissa) ^ 0x55
    return _reindex(code.astype(np.uint8))


def _reindex(table_from_minus32768: np.ndarray) -> np.ndarray:
    """Reorder so the table is indexed by the int16 value viewed as uint16."""
    return np.concatenate([table_from_minus32768[32768:], table_from_minus32768[:32768]])


ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()
ULAW_ENCODE = _ulaw_encode_table()
ALAW_ENCODE = _alaw_encode_table()

#: RTP static payload types (RFC 3551 Table 4).
PCMU = 0
PCMA = 8

DECODE = {PCMU: ULAW_DECODE, PCMA: ALAW_DECODE}
ENCODE = {PCMU: ULAW_ENCODE, PCMA: ALAW_ENCODE}
#: Encoded silence per law.
SILENCE = {PCMU: 0xFF, PCMA: 0xD5}


def decode(codes: np.ndarray, pt: int) -> np.ndarray:
    """uint8 G.711 codes (any shape) -> int16 samples."""
    return np.take(DECODE[pt], codes)


def decode_rows(codes: np.ndarray, alaw_rows: list[int]) -> np.ndarray:
    """(streams, samples) codes of mixed laws -> int16: mu-law for all in one lookup, then the
    A-law streams (row indexes ``alaw_rows``) again with their own table."""
    out = np.take(ULAW_DECODE, codes)
    if alaw_rows:
        out[alaw_rows] = np.take(ALAW_DECODE, codes[alaw_rows])
    return out


def encode(samples: np.ndarray, pt: int) -> np.ndarray:
    """int16 samples (any shape) -> uint8 G.711 codes."""
    return np.take(ENCODE[pt], samples.view(np.uint16))


@cache
def transcode_table(src_pt: int, dst_pt: int) -> np.ndarray:
    """A 256-entry table mapping one law's codes to the other's directly."""
    return ENCODE[dst_pt][DECODE[src_pt].view(np.uint16)]


@cache
def mix_table(pt: int, prompt_shift: int = 1) -> np.ndarray:
    """A 65536-entry table: ``(voice_code << 8) | prompt_code`` -> the code of
    ``voice + prompt / 2**prompt_shift`` (saturated), i.e. decode, mix and encode in one lookup.

    Mixing a prompt into many streams of the same law is then one ``np.take`` per
    direction, bit-identical to decoding, adding and re-encoding.
    """
    dec = DECODE[pt].astype(np.int32)
    mixed = np.clip(dec[:, None] + (dec[None, :] >> prompt_shift), -32768, 32767).astype(np.int16)
    return ENCODE[pt][mixed.view(np.uint16)].ravel()


def mix_codes(voice: np.ndarray, prompt: np.ndarray, pt: int, prompt_shift: int = 1) -> np.ndarray:
    """``voice`` (streams, samples) uint8 codes mixed with one ``prompt`` (samples,) of codes."""
    return np.take(mix_table(pt, prompt_shift), (voice.astype(np.uint16) << 8) | prompt)
