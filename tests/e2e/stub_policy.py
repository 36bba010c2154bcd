#!/usr/bin/env python3
"""A stand-in Postfix policy server for debugging tests/e2e/postfix.sh without sluice.

Answers DUNNO to everything, except that RCPT requests from SENDER beyond the first LIMIT
messages (counted once per Postfix `instance`) get `REJECT TEXT`. It is a fixture for the
Postfix plumbing only; the real test runs the sluice binary.

Usage: stub_policy.py PORT SENDER LIMIT TEXT
"""

import socketserver
import sys

PORT, SENDER, LIMIT, TEXT = int(sys.argv[1]), sys.argv[2].lower(), int(sys.argv[3]), sys.argv[4]
seen_instances = []


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        attrs = {}
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line:
                name, _, value = line.partition("=")
                attrs[name] = value
                continue
            self.wfile.write(f"action={self.decide(attrs)}\n\n".encode())
            self.wfile.flush()
            attrs = {}

    @staticmethod
    def decide(attrs):
        if attrs.get("protocol_state") != "RCPT" or attrs.get("sender", "").lower() != SENDER:
            return "DUNNO"
        instance = attrs.get("instance", "")
        if instance in seen_instances:
            return "DUNNO"
        if len(seen_instances) >= LIMIT:
            return f"REJECT {TEXT}"
        seen_instances.append(instance)
        return "DUNNO"


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    with Server(("127.0.0.1", PORT), Handler) as server:
        server.serve_forever()
