"""A stand-in server process for supervision tests: ``python tiny_http.py PORT CHILD_PID_FILE``.

Answers ``GET /health`` with 200 and starts one child process (as vLLM starts its engine core), so a
test can check that stopping the group stops the child too. Not an engine: only the process
lifecycle is under test with it; the real vLLM is tested in tests/e2e.
"""

from __future__ import annotations

import subprocess
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    port, child_file = int(sys.argv[1]), Path(sys.argv[2])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    child_file.write_text(str(child.pid))
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
