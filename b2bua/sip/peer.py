"""Where a SIP message came from or goes to (a leaf: the transport, transaction and event modules share it)."""

from __future__ import annotations

from typing import NamedTuple


class Peer(NamedTuple):
    """Where a message came from or goes to.

    ``conn`` identifies a stream connection (0 for UDP or "open one if needed").
    """

    transport: str
    host: str
    port: int
    conn: int = 0


__all__ = ["Peer"]
