"""The editor's HTTP hygiene: who may talk to it (Host and Origin policy) and how many at once.

The editor listens on loopback, but a web page in the user's browser can still reach it: by a
DNS name that resolves to 127.0.0.1 (DNS rebinding, caught by the Host check) or by a
cross-origin fetch or form post (caught by the Origin and Sec-Fetch-Site checks). The server
runs each connection on its own thread, at most `max_connections` at once (further connections
are closed at once), and a connection idle for `idle_timeout` seconds is closed, so no client can
make the process start threads without bound (`p2phd.engine.serving.bounded_http`).
"""

from __future__ import annotations

from collections.abc import Iterable

from werkzeug.serving import BaseWSGIServer

from p2phd.engine.apps.editor.config import EditorConfig
from p2phd.engine.serving.bounded_http import BoundedThreadingMixIn

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Sec-Fetch-Site values of requests the page itself makes, or the user typing the address.
SAME_SITE_FETCHES = ("same-origin", "none")
IDLE_TIMEOUT_S = 30.0


def host_name(host: str) -> str:
    """The name in a Host header value, without the port and IPv6 brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host[1:]
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names the editor answers to: loopback, the address it binds and the names given.
    (A page on another site can choose the name its requests carry only by its own domain,
    which none of these is.)"""
    return frozenset({*LOOPBACK_NAMES, host_name(bound), *(host_name(h) for h in extra)})


def refusal(
    host: str, origin: str | None, fetch_site: str | None, scheme: str, hosts: frozenset[str]
) -> str | None:
    """Why a request must be refused (403), or None. `origin`/`fetch_site` are None for
    requests the Origin policy does not cover (the page itself and its scripts)."""
    if host_name(host) not in hosts:
        names = ", ".join(sorted(hosts))
        return (
            f"Host {host!r} is not a name this editor serves ({names}); pass --allow-host to "
            "add one"
        )
    if origin is not None and origin.lower() != f"{scheme}://{host}".lower():
        return (
            f"cross-origin request from {origin!r} refused: only the editor's own page may call it"
        )
    if fetch_site is not None and fetch_site not in SAME_SITE_FETCHES:
        return f"cross-site request (Sec-Fetch-Site: {fetch_site}) refused"
    return None


class BoundedWSGIServer(BoundedThreadingMixIn, BaseWSGIServer):
    """Werkzeug's WSGI server with one thread per connection, at most `max_connections`."""

    multithread = True

    def __init__(
        self,
        host: str,
        port: int,
        app,
        *,
        max_connections: int = EditorConfig.max_connections,
        idle_timeout: float = IDLE_TIMEOUT_S,
    ):
        super().__init__(
            host, port, app, max_connections=max_connections, idle_timeout=idle_timeout
        )
