"""A throwaway HTTP server on 127.0.0.1 for tests that fetch inputs by URL."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler] | functools.partial) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port; yields the base URL, shuts down on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def serve_dir(directory: Path):
    """Serve the files of ``directory`` (quietly) on a free loopback port."""
    return http_server(functools.partial(_QuietFiles, directory=str(directory)))
