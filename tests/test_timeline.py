"""The recording jitter buffer (media.timeline) on a fake clock: where each payload lands in the file."""

from __future__ import annotations

from media.timeline import DELAY, FRAME, RESYNC, RecordingClock, Track


def _frame(n: int) -> bytes:
    return bytes([n % 200]) * FRAME


def _at(frames: float) -> float:
    """A moment inside frame ``frames`` of the timeline (clear of float rounding at its edges)."""
    return 100.005 + 0.02 * frames


def _track(t0: float = 100.0) -> tuple[RecordingClock, Track]:
    clock = RecordingClock()
    clock.start(t0)
    return clock, Track(clock, 0xFF)


def _drain(clock: RecordingClock, track: Track, now: float) -> list[int | None]:
    """Write what is due at ``now`` as the engine does: a frame's marker byte, or None for silence."""
    out: list[int | None] = []
    for _ in range(max(0, clock.due(now))):
        frame = track.take(clock.written, b"")
        out.append(frame[0] if frame else None)
        clock.written += 1
    return out


def test_in_order_packets_are_written_a_fixed_delay_later_in_their_frames() -> None:
    clock, track = _track()
    for i in range(30):
        track.put(1000 + 160 * i, _frame(i), _at(i))
    assert _drain(clock, track, _at(DELAY + 5)) == [0, 1, 2, 3, 4]  # (a frame is due once wholly past)
    assert _drain(clock, track, _at(30 + DELAY)) == list(range(5, 30))


def test_a_burst_after_a_stall_lands_where_its_timestamps_say() -> None:
    """Ten frames held up 200 ms (under the delay) and delivered at once are not shifted or lost."""
    clock, track = _track()
    for i in range(5):
        track.put(160 * i, _frame(i), _at(i))
    for i in range(5, 15):  # all arrive at the same moment, 200 ms late for the first of them
        track.put(160 * i, _frame(i), _at(15))
    for i in range(15, 20):
        track.put(160 * i, _frame(i), _at(i))
    assert _drain(clock, track, _at(20 + DELAY)) == list(range(20))


def test_reordered_packets_are_put_back_in_order() -> None:
    clock, track = _track()
    order = [0, 2, 1, 3, 5, 4, 6, 9, 7, 8]
    for k, i in enumerate(order):
        track.put(160 * i, _frame(i), _at(k))
    assert _drain(clock, track, _at(10 + DELAY)) == list(range(10))
    assert clock.late == 0


def test_an_old_packet_too_late_to_be_written_is_dropped_and_counted() -> None:
    clock, track = _track()
    for i in range(1, 25):
        track.put(160 * i, _frame(i), _at(i))
    first = _drain(clock, track, _at(5 + DELAY))
    track.put(0, _frame(0), _at(25))  # frame 0, half a second late: its place is written
    track.put(160 * 25, _frame(25), _at(25))  # the stream goes on where it was
    rest = _drain(clock, track, _at(26 + DELAY))
    assert clock.late == 1
    assert first + rest == [None] + list(range(1, 26))


def test_a_stream_later_than_the_delay_is_moved_up_without_losing_audio() -> None:
    """A stall longer than the delay: the frames that could not be written in their place are written
    in the first place still open, in order, and none is lost."""
    clock, track = _track()
    for i in range(5):
        track.put(160 * i, _frame(i), _at(i))
    stall = DELAY + 10
    assert _drain(clock, track, _at(5 + stall)) == list(range(5)) + [None] * (stall - DELAY)
    for i in range(5, 5 + stall):  # everything sent during the stall arrives at once
        track.put(160 * i, _frame(i), _at(5 + stall))
    out = _drain(clock, track, _at(5 + 2 * stall + DELAY))
    assert [x for x in out if x is not None] == list(range(5, 5 + stall))


def test_a_timestamp_jump_places_the_stream_again_from_its_arrival() -> None:
    clock, track = _track()
    track.put(0, _frame(1), _at(0))
    track.put(0x9000_0000, _frame(2), _at(1))  # a new source: timestamps from elsewhere
    track.put(0x9000_0000 + 160, _frame(3), _at(2))
    assert _drain(clock, track, _at(3 + DELAY)) == [1, 2, 3]
    assert RESYNC * FRAME < 0x9000_0000


def test_timestamps_wrap_around_without_a_jump() -> None:
    clock, track = _track()
    base = 0xFFFF_FFFF - 2 * 160 + 1
    for i in range(6):
        track.put((base + 160 * i) & 0xFFFF_FFFF, _frame(i), _at(i))
    assert _drain(clock, track, _at(6 + DELAY)) == list(range(6))


def test_30_ms_packets_are_split_across_20_ms_frames() -> None:
    clock, track = _track()
    payload = bytes(range(240)) * 2  # two 30 ms packets = three 20 ms frames
    track.put(0, payload[:240], _at(0))
    track.put(240, payload[240:], _at(1.5))
    written = b"".join(track.take(n, b"") for n in range(3))
    assert written == payload


def test_a_10_ms_packet_fills_half_a_frame_and_the_rest_stays_silent() -> None:
    clock, track = _track()
    track.put(0, b"\x01" * 80, _at(0))
    assert bytes(track.take(0, b"")) == b"\x01" * 80 + b"\xff" * 80
