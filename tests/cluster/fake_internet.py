"""The tests' "internet": an HTTP server and a DNS server, run inside a network namespace the test made.

``python fake_internet.py ADDRESS`` serves, on every address of its
namespace, a page on port 80 and DNS on UDP port 53 that answers
``mirror.test`` (A) with ADDRESS and nothing else (NXDOMAIN). It prints
"ready" once both listen. The standard library only (DESIGN: no extra
packages for tests' servers).
"""

from __future__ import annotations

import http.server
import socketserver
import struct
import sys
import threading

PAGE = b"hello from the test's internet\n"
NAME = "mirror.test"


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


def question(packet: bytes) -> tuple[str, int, int]:
    """The first question's name, type, and the offset just after it."""
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    qtype = struct.unpack("!H", packet[offset + 1 : offset + 3])[0]
    return ".".join(labels).lower(), qtype, offset + 5


def answer(packet: bytes, address: str) -> bytes:
    """A response to ``packet``: ``address`` for an A query of NAME, an empty answer for its other types."""
    (ident,) = struct.unpack("!H", packet[:2])
    name, qtype, end = question(packet)
    known = name == NAME
    records = b""
    if known and qtype == 1:
        # A pointer to the question's name, type A, class IN, TTL 60, 4 bytes.
        records = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes(
            int(part) for part in address.split(".")
        )
    flags = 0x8180 if known else 0x8183  # response, recursion available; NXDOMAIN if unknown
    header = struct.pack("!HHHHHH", ident, flags, 1, 1 if records else 0, 0, 0)
    return header + packet[12:end] + records


def serve(address: str) -> None:
    class Dns(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            try:
                sock.sendto(answer(data, address), self.client_address)
            except (IndexError, struct.error, ValueError):
                pass  # not a query we can read: no answer, as a real server

    web = http.server.ThreadingHTTPServer(("0.0.0.0", 80), Page)  # noqa: S104 - its own namespace
    dns = socketserver.ThreadingUDPServer(("0.0.0.0", 53), Dns)  # noqa: S104 - its own namespace
    threading.Thread(target=dns.serve_forever, daemon=True).start()
    print("ready", flush=True)
    web.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1])
