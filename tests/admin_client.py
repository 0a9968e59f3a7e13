"""The admin listener from a test's side: three users (one per role), a config that has them, and a client
with a cookie jar as a browser has (login, CSRF header, JSON answers)."""

from __future__ import annotations

import http.cookiejar
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from harness import free_port, write_config

from b2bua.admin_auth import hash_password

PASSWORDS = {"kim": "viewer-password-1", "lee": "operator-password-2", "park": "auditor-password-3"}
ROLES = {"kim": "viewer", "lee": "operator", "park": "auditor"}
HASHES = {name: hash_password(pw) for name, pw in PASSWORDS.items()}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as answers (a test checks where a page sends the browser)."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class AdminClient:
    """A client with a cookie jar, as a browser is (``https`` with ``context``)."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None):
        self.base = f"{'https' if context else 'http'}://127.0.0.1:{port}"
        self.jar = http.cookiejar.CookieJar()
        handlers: list = [urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)
        self.csrf = ""
        self.set_cookie = ""

    def call(self, method: str, path: str, body: dict | None = None, csrf: bool = True) -> tuple[int, dict]:
        status, raw, _ = self.fetch(method, path, body, csrf)
        return status, json.loads(raw or b"{}")

    def fetch(self, method: str, path: str, body: dict | None = None, csrf: bool = True,
              headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) of any route, pages included; redirects are not followed."""
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        if csrf and self.csrf:
            req.add_header("X-CSRF-Token", self.csrf)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with self.opener.open(req, timeout=15) as resp:
                self.set_cookie = resp.headers.get("Set-Cookie", "") or self.set_cookie
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def login(self, name: str, password: str | None = None) -> int:
        status, body = self.call("POST", "/api/login", {"name": name, "password": password or PASSWORDS[name]})
        self.csrf = body.get("csrf", "")
        return status


def config_with_users(tmp_path: Path, uas_port: int | None = None, *, routing: dict | None = None,
                      admin: dict | None = None) -> tuple[Path, int]:
    """A test config whose admin listener has the three users (no token, no socket); (its path, admin port).
    ``routing`` replaces the lab route to ``uas_port``; ``admin`` keys are laid over the admin section."""
    routes = {"routes": [{"name": "lab", "prefix": "", "targets": [f"sip:127.0.0.1:{uas_port}"]}]} if uas_port \
        else None
    cfg = write_config(tmp_path / "config", routing=routing or routes)
    data = yaml.safe_load(cfg.read_text())
    port = free_port()
    data["metrics"] = {"address": f"127.0.0.1:{port}"}
    data["admin"] = {"socket": None, "token_env": "B2BUA_TEST_NO_TOKEN",
                     "users": [{"name": n, "password_hash": HASHES[n], "role": ROLES[n]} for n in PASSWORDS],
                     **(admin or {})}
    cfg.write_text(yaml.safe_dump(data, allow_unicode=True))
    return cfg, port


__all__ = ["HASHES", "PASSWORDS", "ROLES", "AdminClient", "config_with_users"]
