"""Server side of RFC 6455 framing, enough for the Kubernetes channel protocols.

The stub's kubelet upgrades the API server's own ``BaseHTTPRequestHandler``
connection: the handshake is answered on ``handler.wfile`` and frames are
then read from ``handler.rfile`` (which may already hold buffered bytes, so
the raw socket is never read directly) and written to the socket.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class WebSocketClosed(Exception):
    """The peer closed the connection or sent a close frame."""


def accept_key(key: str) -> str:
    digest = hashlib.sha1((key.strip() + GUID).encode()).digest()
    return base64.b64encode(digest).decode()


def offered_protocols(handler) -> list[str]:
    offered = []
    for value in handler.headers.get_all("Sec-WebSocket-Protocol") or []:
        offered.extend(p.strip() for p in value.split(",") if p.strip())
    return offered


def is_upgrade(handler) -> bool:
    return (handler.headers.get("Upgrade") or "").lower() == "websocket" and bool(
        handler.headers.get("Sec-WebSocket-Key")
    )


class WebSocket:
    """One upgraded connection. ``send`` is safe from several threads."""

    def __init__(self, handler, protocol: str | None):
        self.handler = handler
        self.protocol = protocol
        self.rfile = handler.rfile
        self.sock = handler.connection
        self._send_lock = threading.Lock()
        self.closed = False

    @classmethod
    def accept(cls, handler, protocol: str | None) -> WebSocket:
        handler.close_connection = True
        key = handler.headers["Sec-WebSocket-Key"]
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(key)}",
        ]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        handler.wfile.flush()
        return cls(handler, protocol)

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.rfile.read(n - len(data))
            if not chunk:
                raise WebSocketClosed("connection closed")
            data += chunk
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        b0, b1 = self._read_exact(2)
        fin = bool(b0 & 0x80)
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        mask = self._read_exact(4) if masked else None
        payload = self._read_exact(length) if length else b""
        if mask:
            # XOR through int arithmetic: a per-byte loop is far too slow for
            # the megabyte frames a port-forward may carry.
            reps = (mask * (length // 4 + 1))[:length]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(reps, "big")).to_bytes(
                length, "big"
            )
        return fin, opcode, payload

    def recv(self) -> tuple[int, bytes]:
        """The next data message (opcode, payload); answers pings itself.

        Raises WebSocketClosed on a close frame (answered) or a dropped connection.
        """
        parts: list[bytes] = []
        first_op = None
        while True:
            fin, opcode, payload = self._read_frame()
            if opcode == OP_CLOSE:
                try:
                    self.send_frame(OP_CLOSE, payload[:2])
                except OSError:
                    pass
                self.closed = True
                raise WebSocketClosed("close frame")
            if opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
                continue
            if opcode == OP_PONG:
                continue
            if opcode != OP_CONT:
                first_op = opcode
            parts.append(payload)
            if fin:
                return first_op if first_op is not None else OP_BINARY, b"".join(parts)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        with self._send_lock:
            self.sock.sendall(header + payload)

    def send_binary(self, payload: bytes) -> None:
        self.send_frame(OP_BINARY, payload)

    def close(self, code: int = 1000) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", code))
        except OSError:
            pass
