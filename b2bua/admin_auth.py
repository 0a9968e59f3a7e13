"""Who may use the admin API, and for what: users with scrypt password hashes and roles, browser sessions with
a CSRF token, login rate limiting (issue #14's access model; the console's pages build on it).

Roles, each including the one before it where it says so:

- ``viewer``: live calls, history, metrics;
- ``operator``: a viewer who may also hang up calls, label abuse events, drain and reload;
- ``auditor``: a viewer who may also play and download recordings and abuse clips (personal data: every
  such access is written to the audit table), and read the audit table.

Sans-I/O: the clock is passed in; :mod:`b2bua.admin` turns requests into these calls.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field

ROLES = ("viewer", "operator", "auditor")
#: what each role may do
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"view"}),
    "operator": frozenset({"view", "control"}),
    "auditor": frozenset({"view", "listen", "audit"}),
}
#: scrypt cost (RFC 7914): 16 MiB of memory per check, about 50 ms
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
#: a browser session lasts this long without use
SESSION_IDLE_S = 30 * 60.0
#: failed logins from one address (or for one user) within the window before logins are refused for a while
MAX_FAILURES, FAILURE_WINDOW_S, LOCKOUT_S = 5, 300.0, 60.0


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt>$<hash>`` (base64): what ``admin.users[].password_hash`` holds."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    """(N, r, p, salt, hash) of an encoded hash; ValueError when it is not one."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not a password hash: expected scrypt$N$r$p$salt$hash (b2bua admin hash-password)")
    n, r, p = (int(x) for x in parts[1:4])
    return n, r, p, base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)


def verify_password(password: str, encoded: str) -> bool:
    try:
        n, r, p, salt, expected = parse_hash(encoded)
    except ValueError:
        return False
    got = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**26)
    return hmac.compare_digest(got, expected)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str
    role: str


@dataclass(slots=True)
class Session:
    """A logged-in browser: its cookie value, the CSRF token its forms and scripts send back, its role."""

    user: str
    role: str
    csrf: str
    last_used: float

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


@dataclass(slots=True)
class Authenticator:
    """The users, the open sessions and the failed logins of one process."""

    users: dict[str, User] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def locked(self, keys: tuple[str, ...], now: float) -> bool:
        """Whether logins from this address (or for this user) are refused for now (HTTP 429)."""
        return any(self._locked_until.get(k, 0.0) > now for k in keys)

    def check(self, name: str, password: str) -> User | None:
        """The user whose password this is, or None. The slow part (scrypt): run it off the event loop.
        A missing user costs the same scrypt as a wrong password: no timing tells which names exist."""
        user = self.users.get(name)
        ok = verify_password(password, user.password_hash if user else _DUMMY)
        return user if user is not None and ok else None

    def login(self, name: str, password: str, remote: str, now: float) -> Session | None:
        """A new session, or None (a wrong name or password is counted towards the lockout)."""
        return self.admit(self.check(name, password), name, remote, now)

    def admit(self, user: User | None, name: str, remote: str, now: float) -> Session | None:
        """After :meth:`check`: a session for ``user``, or the failure counted."""
        keys = (f"addr:{remote}", f"user:{name}")
        if user is None:
            for key in keys:
                window = self._failures.setdefault(key, deque())
                window.append(now)
                while window and window[0] < now - FAILURE_WINDOW_S:
                    window.popleft()
                if len(window) >= MAX_FAILURES:
                    self._locked_until[key] = now + LOCKOUT_S
                    window.clear()
            return None
        for key in keys:
            self._failures.pop(key, None)
        session = Session(user.name, user.role, secrets.token_urlsafe(24), now)
        self.sessions[secrets.token_urlsafe(32)] = session
        return session

    def cookie_of(self, session: Session) -> str:
        return next(k for k, s in self.sessions.items() if s is session)

    def session(self, cookie: str | None, now: float) -> Session | None:
        """The session behind a cookie, still alive (its idle time restarts)."""
        session = self.sessions.get(cookie or "")
        if session is None:
            return None
        if now - session.last_used > SESSION_IDLE_S:
            del self.sessions[cookie or ""]
            return None
        session.last_used = now
        return session

    def logout(self, cookie: str | None) -> None:
        self.sessions.pop(cookie or "", None)


_DUMMY = hash_password("never a password", salt=b"\0" * 16)

__all__ = ["Authenticator", "PERMISSIONS", "ROLES", "Session", "User", "hash_password", "parse_hash",
           "verify_password"]
