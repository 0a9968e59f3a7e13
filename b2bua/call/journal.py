"""Calls in progress, written down as they start, are answered and end: after a crash (``kill -9``, power
loss) the next start writes the CDRs of the calls it cut short, with cause ``process_restart``.

A :class:`~.features.Features` first in the chain (it never holds a call back); the sink (the CDR store)
batches the writes off the event loop.
"""

from __future__ import annotations

from typing import Protocol

from .b2bua import B2BUA
from .features import Features
from .model import Call, CallRecord


class JournalSink(Protocol):
    def live(self, record: CallRecord) -> None: ...
    def gone(self, call_id: str) -> None: ...


class CallJournal(Features):
    def __init__(self, b2bua: B2BUA, sink: JournalSink):
        self.b2bua = b2bua
        self.sink = sink

    def on_new_call(self, call: Call) -> bool:
        self.sink.live(call.record(self.b2bua.clock.now))
        return False

    def on_answer(self, call: Call) -> None:
        self.sink.live(call.record(self.b2bua.clock.now))

    def on_end(self, call: Call) -> None:
        self.sink.gone(call.id)


__all__ = ["CallJournal", "JournalSink"]
