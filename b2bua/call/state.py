"""A call's state machine, readable in one place (the way h11's ``_state.py`` lays out HTTP/1.1).

A call starts in ``ROUTING`` (the router has answered; a feature may still hold the outbound
INVITE back for a notice), rings (``PROCEEDING``: outbound INVITE sent; ``EARLY``: a provisional
came back, RFC 3261 §13.2.2.1), is answered (``ANSWERED``: 2xx sent to the caller, its ACK
pending, §13.3.1.4; ``CONFIRMED`` once it came) and ends either before the answer
(``CANCELLING``: final response sent to the caller, CANCEL sent to the callee, §9.1) or after it
(``TERMINATING``: BYE sent, §15.1.1), then ``ENDED`` (forgotten, the CDR written).

Every state change goes through :func:`check_transition`: a move the table below does not list
is a bug in call control and raises :class:`CallStateError` (caught and logged by the driver,
so one call's bug never stops the server).
"""

from __future__ import annotations

from enum import Enum


class CallState(Enum):
    ROUTING = "routing"
    PROCEEDING = "proceeding"
    EARLY = "early"
    ANSWERED = "answered"  # 2xx sent to A, A's ACK pending
    CONFIRMED = "confirmed"
    CANCELLING = "cancelling"
    TERMINATING = "terminating"
    ENDED = "ended"


ROUTING, PROCEEDING, EARLY = CallState.ROUTING, CallState.PROCEEDING, CallState.EARLY
ANSWERED, CONFIRMED = CallState.ANSWERED, CallState.CONFIRMED
CANCELLING, TERMINATING, ENDED = CallState.CANCELLING, CallState.TERMINATING, CallState.ENDED

#: state -> the states it may move to. PROCEEDING and EARLY may go back to PROCEEDING: a failover
#: or a no-answer timeout starts the next gateway from scratch. Any state but ENDED may end at
#: once (a final error response to the caller, or the cleanup timer giving up on the far end).
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    ROUTING: frozenset({PROCEEDING, CANCELLING, TERMINATING, ENDED}),
    PROCEEDING: frozenset({PROCEEDING, EARLY, ANSWERED, CANCELLING, TERMINATING, ENDED}),
    EARLY: frozenset({PROCEEDING, EARLY, ANSWERED, CANCELLING, TERMINATING, ENDED}),
    ANSWERED: frozenset({CONFIRMED, TERMINATING, ENDED}),
    CONFIRMED: frozenset({TERMINATING, ENDED}),
    CANCELLING: frozenset({TERMINATING, ENDED}),
    TERMINATING: frozenset({ENDED}),
    ENDED: frozenset(),
}

#: the outbound INVITE is out and nothing is answered: a provisional may still come, a CANCEL may go
RINGING = frozenset({PROCEEDING, EARLY})
#: not answered yet, outbound INVITE sent or not (a caller's CANCEL or a feature's release applies)
UNANSWERED = frozenset({ROUTING, PROCEEDING, EARLY})
#: answered and not being torn down: in-dialog requests, refreshes and staff keys apply
LIVE = frozenset({ANSWERED, CONFIRMED})
#: being torn down or gone: nothing new starts
DONE = frozenset({TERMINATING, ENDED})
#: no in-dialog request is relayed any more (481)
CLOSING = frozenset({CANCELLING, TERMINATING, ENDED})


class CallStateError(RuntimeError):
    """A state change the table does not allow: a bug in call control, never the peers' fault."""


def check_transition(old: CallState, new: CallState) -> CallState:
    """``new`` when ``old -> new`` is allowed, else :class:`CallStateError`."""
    if new not in TRANSITIONS[old]:
        raise CallStateError(f"call state {old.value} -> {new.value} is not allowed")
    return new


__all__ = ["CLOSING", "DONE", "LIVE", "RINGING", "TRANSITIONS", "UNANSWERED", "CallState", "CallStateError",
           "check_transition"]
