"""A listen address (``udp:127.0.0.1:5060``): parsed by the configuration, bound by the server.

A leaf module (no project imports, no asyncio), so the configuration can validate ``sip.listen``
without importing the transport driver.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Listener"]


@dataclass(slots=True)
class Listener:
    """``udp:127.0.0.1:5060`` style listen address."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listener:
        transport, _, rest = text.partition(":")
        host, _, port = rest.rpartition(":")
        transport = transport.lower()
        if transport not in ("udp", "tcp", "tls") or not host or not port.isdigit():
            raise ValueError(f"bad listen address {text!r} (expected udp|tcp|tls:HOST:PORT)")
        return cls(transport, host.strip("[]"), int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"
