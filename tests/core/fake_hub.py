"""A tiny local HTTP server that answers like the Hugging Face Hub's file endpoints, for tests.

Serves GET /api/models/{repo}[/revision/{rev}] and HEAD/GET /{repo}/resolve/{rev}/{file} with
ETag, X-Repo-Commit and Range support. `drop_once` names files whose first GET is cut off halfway.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.drop_once: set[str] = set()
        self.slow: set[str] = set()
        self.chunk_delay_s = 0.0  # pause between the 64 KiB chunks of a `slow` file (GUI tests press Stop mid-file)
        self.requests: list[tuple[str, str, str]] = []  # (method, path, Range header)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def handle(self):
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):  # the client left mid-file (a test pressed Stop)
                    self.close_connection = True

            def _file(self):
                m = re.match(r"^/(.+?)/resolve/([^/]+)/(.+)$", self.path.split("?")[0])
                if not m or m[1] not in hub.repos or m[3] not in hub.repos[m[1]]:
                    return None, None
                return m[3], hub.repos[m[1]][m[3]]

            def _headers(self, data: bytes, status: int, start: int = 0) -> None:
                self.send_response(status)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()

            def do_HEAD(self):
                hub.requests.append(("HEAD", self.path, self.headers.get("Range", "")))
                name, data = self._file()
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._headers(data, 200)

            def do_GET(self):
                rng = self.headers.get("Range", "")
                hub.requests.append(("GET", self.path, rng))
                api = re.match(r"^/api/models/(.+?)(?:/revision/[^/?]+)?(?:\?.*)?$", self.path)
                if api:
                    repo = api[1]
                    if repo not in hub.repos:
                        body = b'{"error": "Repository not found"}'
                        self.send_response(404)
                        self.send_header("X-Error-Code", "RepoNotFound")
                    else:
                        body = json.dumps(
                            {
                                "id": repo,
                                "sha": COMMIT,
                                "siblings": [{"rfilename": n, "size": len(d)} for n, d in hub.repos[repo].items()],
                            }
                        ).encode()
                        self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name, data = self._file()
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = int(re.match(r"bytes=(\d+)-", rng)[1]) if rng else 0
                self._headers(data, 206 if start else 200, start)
                body = data[start:]
                if name in hub.drop_once:
                    hub.drop_once.discard(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # cut the connection mid-file
                    return
                chunk = 64 * 1024 if name in hub.slow else len(body) or 1
                for i in range(0, len(body), chunk):
                    self.wfile.write(body[i : i + chunk])
                    self.wfile.flush()
                    if name in hub.slow and hub.chunk_delay_s:
                        time.sleep(hub.chunk_delay_s)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
