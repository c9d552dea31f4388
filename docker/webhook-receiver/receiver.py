"""Stands in for Slack's incoming webhooks in the local stack: answers every POST with Slack's
`ok` and keeps it, so a developer (or scripts/compose-smoke.sh) can read what would have been
posted at GET /requests (JSON: path and body of each). Written by hand: a few lines of the
standard library; no maintained package does just this."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECEIVED: list[dict] = []


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        # the token is the last part of the path: keep the path without it
        RECEIVED.append({"path": self.path.rsplit("/", 1)[0] + "/...", "body": body})
        self._reply(200, "text/plain", b"ok")

    def do_GET(self):
        if self.path.rstrip("/") == "/requests":
            self._reply(200, "application/json", json.dumps(RECEIVED).encode())
        else:
            self._reply(200, "text/plain", f"{len(RECEIVED)} webhook requests received; GET /requests\n".encode())

    def _reply(self, status, content_type, payload):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
