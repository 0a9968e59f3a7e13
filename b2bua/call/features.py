"""The hooks call features plug into (staff protection, later abuse detection): no-ops here.

A feature subclasses :class:`Features`, is set as ``B2BUA.features`` and acts on the call only
through the B2BUA's feature API (``early_media``, ``proceed``, ``release``, ``end_call``,
``call_at``) and the call's :class:`~b2bua.call.media.MediaSession`.
"""

from __future__ import annotations

from .model import Call


class Features:
    def on_new_call(self, call: Call) -> bool:
        """A routed call, before the outbound INVITE: True when the feature sends it later
        (``B2BUA.proceed``) or ends the call itself."""
        return False

    def on_answer(self, call: Call) -> None:
        """The callee answered (2xx sent to the caller)."""

    def on_dtmf(self, call: Call, leg: str, digit: str) -> None:
        """A key pressed on ``leg`` (RFC 4733, in-band or SIP INFO)."""

    def on_play_done(self, call: Call, leg: str, prompt: str) -> None:
        """A prompt finished playing to ``leg``."""

    def on_end(self, call: Call) -> None:
        """The call is over (before its media session is closed)."""


class FeatureChain(Features):
    """Several features on one B2BUA, asked in order; the first that holds a new call back owns its start."""

    def __init__(self, *features: Features):
        self.features = features

    def on_new_call(self, call: Call) -> bool:
        return any(f.on_new_call(call) for f in self.features)

    def on_answer(self, call: Call) -> None:
        for f in self.features:
            f.on_answer(call)

    def on_dtmf(self, call: Call, leg: str, digit: str) -> None:
        for f in self.features:
            f.on_dtmf(call, leg, digit)

    def on_play_done(self, call: Call, leg: str, prompt: str) -> None:
        for f in self.features:
            f.on_play_done(call, leg, prompt)

    def on_end(self, call: Call) -> None:
        for f in self.features:
            f.on_end(call)


__all__ = ["FeatureChain", "Features"]
