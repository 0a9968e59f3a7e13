"""The operator console: web pages over the admin API for supervisors, team leads and auditors
(:mod:`.pages`), and the JSON and media routes they use beyond the admin API (:mod:`.api`)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from ..admin_http import Controlled
from .api import CLOSING, add_api
from .pages import add_pages


def add_console(app: web.Application, target: Controlled, registry: CollectorRegistry | None) -> None:
    """Mount the console's routes on the admin application."""
    add_api(app, target, registry)
    add_pages(app, target)


__all__ = ["CLOSING", "add_console"]
