#!/usr/bin/env python3
"""Slack-compatible incoming-webhook receiver, the tests' stand-in for Slack.

Records every request exactly as it arrived (time, path, JSON body) in a JSON
lines file, answers like Slack ("ok"), and exposes what it recorded:
  GET    /requests   -> JSON list of the recorded requests
  DELETE /requests   -> forget them
Serves HTTPS with the given certificate.
"""

import argparse
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def make_handler(log_path):
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, code, body, content_type="text/plain"):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server API)
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length).decode("utf-8", "replace")
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            record = {"received_at": time.time(), "path": self.path, "raw": raw, "body": body}
            with LOCK, open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
            if body is None:
                self._reply(400, "invalid_payload")
            else:
                self._reply(200, "ok")

        def do_GET(self):  # noqa: N802
            if self.path != "/requests":
                self._reply(404, "not found")
                return
            with LOCK:
                try:
                    with open(log_path, encoding="utf-8") as log:
                        records = [json.loads(line) for line in log if line.strip()]
                except FileNotFoundError:
                    records = []
            self._reply(200, json.dumps(records), "application/json")

        def do_DELETE(self):  # noqa: N802
            if self.path != "/requests":
                self._reply(404, "not found")
                return
            with LOCK:
                open(log_path, "w", encoding="utf-8").close()
            self._reply(200, "[]", "application/json")

        def log_message(self, fmt, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("0.0.0.0", args.port), make_handler(args.log))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
