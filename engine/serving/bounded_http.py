"""A thread per HTTP connection, with bounds: the metrics endpoint's and the editor's servers.

`BoundedThreadingMixIn` goes before a socketserver-based server class (wsgiref's WSGIServer,
werkzeug's BaseWSGIServer). It serves each connection on its own thread, at most
`max_connections` at once: a connection beyond them is closed at once, so the accept loop never
waits and shutdown is never held up by clients. A connection that sends nothing for
`idle_timeout` seconds is dropped. So no number of clients, slow or idle, can grow the process's
threads.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn


class BoundedThreadingMixIn(ThreadingMixIn):
    """socketserver's thread per connection, bounded in count and in idle time."""

    daemon_threads = True

    def __init__(self, *args, max_connections: int, idle_timeout: float, **kwargs):
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: its slot is free again
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            request.settimeout(self.idle_timeout)  # each read and write, not the whole request
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
