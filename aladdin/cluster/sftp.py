"""A small SFTP v3 client over a driver stream (:meth:`ClusterDriver.open_files`).

Only the requests the files page needs (draft-ietf-secsh-filexfer-02, the
version OpenSSH's ``sftp-server`` speaks): open/read/write/close,
opendir/readdir, lstat/stat, realpath, mkdir, rmdir, remove, rename and
OpenSSH's ``posix-rename@openssh.com``. Reads and writes are pipelined
(several requests in flight), since every round trip crosses the agent.

Paths are bytes-safe strings handed to the server as they are: the server
runs inside the user's sandbox, so this client judges nothing and can
reach nothing the user's uid inside the sandbox cannot.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .base import DriverError, ExecSession

# Packet types.
INIT, VERSION = 1, 2
OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT = 3, 4, 5, 6, 7, 8
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME = 11, 12, 13, 14, 15, 16, 17, 18
EXTENDED = 200
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
# Status codes.
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE = 0, 1, 2, 3, 4
# Open flags.
FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_EXCL = 1, 2, 4, 8, 0x10, 0x20
# Attribute flags.
A_SIZE, A_UIDGID, A_PERMISSIONS, A_ACMODTIME, A_EXTENDED = 1, 2, 4, 8, 0x80000000

S_IFMT, S_IFDIR, S_IFLNK, S_IFREG = 0o170000, 0o040000, 0o120000, 0o100000
CHUNK = 64 * 1024  # under sftp-server's 256 KiB message limit
IN_FLIGHT = 16
TIMEOUT = 60.0


class SftpError(DriverError):
    """The server refused a request: ``status`` is the SFTP status code."""

    def __init__(self, status: int, message: str):
        super().__init__(message or f"SFTP status {status}", permanent=True, code=f"sftp_{status}")
        self.status = status


@dataclass(frozen=True)
class Attrs:
    """What SFTP v3 says of a file (fields absent from the answer are None)."""

    size: int | None = None
    permissions: int | None = None
    mtime: int | None = None

    @property
    def is_dir(self) -> bool:
        return self.permissions is not None and self.permissions & S_IFMT == S_IFDIR

    @property
    def is_link(self) -> bool:
        return self.permissions is not None and self.permissions & S_IFMT == S_IFLNK

    @property
    def is_file(self) -> bool:
        return self.permissions is not None and self.permissions & S_IFMT == S_IFREG


@dataclass(frozen=True)
class Entry:
    """One name in a directory, with its lstat attributes (a symlink is a link, not its target)."""

    name: str
    attrs: Attrs


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DriverError("the SFTP server sent a truncated packet", permanent=True)
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def u64(self) -> int:
        value: int = struct.unpack(">Q", self.take(8))[0]
        return value

    def string(self) -> bytes:
        return self.take(self.u32())

    def attrs(self) -> Attrs:
        flags = self.u32()
        size = permissions = mtime = None
        if flags & A_SIZE:
            size = self.u64()
        if flags & A_UIDGID:
            self.u32(), self.u32()
        if flags & A_PERMISSIONS:
            permissions = self.u32()
        if flags & A_ACMODTIME:
            self.u32()
            mtime = self.u32()
        if flags & A_EXTENDED:
            for _ in range(self.u32()):
                self.string(), self.string()
        return Attrs(size=size, permissions=permissions, mtime=mtime)


def _string(value: str | bytes) -> bytes:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return struct.pack(">I", len(data)) + data


def _decode(name: bytes) -> str:
    return name.decode("utf-8", "surrogateescape")


NO_ATTRS = struct.pack(">I", 0)


class SftpClient:
    """One SFTP session on an :class:`ExecSession` (sftp-server's stdin/stdout).

    Not thread-safe; one caller at a time (calls may come from different
    threads in turn). :meth:`close` ends the session and the server.
    """

    def __init__(self, session: ExecSession, *, timeout: float = TIMEOUT):
        self._session = session
        self._timeout = timeout
        self._buffer = bytearray()
        self._next_id = 0
        try:
            self._session.write(struct.pack(">IBI", 5, INIT, 3))
            kind, _ = self._packet()
        except BaseException:
            self.close()
            raise
        if kind != VERSION:
            self.close()
            raise DriverError("the files server did not answer SFTP", permanent=True)

    def __enter__(self) -> SftpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # --- the wire ----------------------------------------------------------------
    def _send(self, kind: int, payload: bytes) -> int:
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        body = struct.pack(">BI", kind, self._next_id) + payload
        self._session.write(struct.pack(">I", len(body)) + body)
        return self._next_id

    def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            try:
                stream, data = self._session.read(self._timeout)
            except TimeoutError as exc:
                raise DriverError("the files server did not answer in time") from exc
            if stream == 0:
                raise DriverError("the files server ended the session")
            if stream == 1:
                self._buffer += data

    def _packet(self) -> tuple[int, _Reader]:
        self._fill(4)
        length = struct.unpack(">I", self._buffer[:4])[0]
        self._fill(4 + length)
        body = bytes(self._buffer[4 : 4 + length])
        del self._buffer[: 4 + length]
        return body[0], _Reader(body[1:])

    def _answer(self, request_id: int) -> tuple[int, _Reader]:
        kind, reader = self._packet()
        if reader.u32() != request_id:
            raise DriverError("the files server answered out of order", permanent=True)
        return kind, reader

    @staticmethod
    def _status(reader: _Reader) -> tuple[int, str]:
        code = reader.u32()
        message = _decode(reader.string()) if reader.pos < len(reader.data) else ""
        return code, message

    def _expect(self, request_id: int, want: int) -> _Reader:
        kind, reader = self._answer(request_id)
        if kind == want:
            return reader
        if kind == STATUS:
            code, message = self._status(reader)
            if want == STATUS and code == OK:
                return reader
            raise SftpError(code, message)
        raise DriverError(f"unexpected SFTP answer {kind}", permanent=True)

    def _call(self, kind: int, payload: bytes, want: int = STATUS) -> _Reader:
        return self._expect(self._send(kind, payload), want)

    # --- requests ----------------------------------------------------------------
    def realpath(self, path: str) -> str:
        reader = self._call(REALPATH, _string(path), NAME)
        reader.u32()  # count, always 1
        return _decode(reader.string())

    def stat(self, path: str) -> Attrs:
        return self._call(STAT, _string(path), ATTRS).attrs()

    def lstat(self, path: str) -> Attrs:
        return self._call(LSTAT, _string(path), ATTRS).attrs()

    def listdir(self, path: str) -> list[Entry]:
        """The entries of ``path`` (no ``.`` and ``..``), with lstat attributes."""
        handle = self._call(OPENDIR, _string(path), HANDLE).string()
        entries: list[Entry] = []
        try:
            while True:
                request_id = self._send(READDIR, _string(handle))
                kind, reader = self._answer(request_id)
                if kind == STATUS:
                    code, message = self._status(reader)
                    if code == EOF:
                        break
                    raise SftpError(code, message)
                if kind != NAME:
                    raise DriverError(f"unexpected SFTP answer {kind}", permanent=True)
                for _ in range(reader.u32()):
                    name = _decode(reader.string())
                    reader.string()  # the longname, ls -l style
                    attrs = reader.attrs()
                    if name not in (".", ".."):
                        entries.append(Entry(name, attrs))
        finally:
            self._close_handle(handle)
        return entries

    def mkdir(self, path: str) -> None:
        self._call(MKDIR, _string(path) + NO_ATTRS)

    def rmdir(self, path: str) -> None:
        self._call(RMDIR, _string(path))

    def remove(self, path: str) -> None:
        self._call(REMOVE, _string(path))

    def rename(self, old: str, new: str) -> None:
        """Refused when ``new`` exists (SFTP v3 semantics)."""
        self._call(RENAME, _string(old) + _string(new))

    def posix_rename(self, old: str, new: str) -> None:
        """rename(2): replaces ``new`` (OpenSSH's extension)."""
        self._call(EXTENDED, _string("posix-rename@openssh.com") + _string(old) + _string(new))

    def _close_handle(self, handle: bytes) -> None:
        self._call(CLOSE, _string(handle))

    def _open(self, path: str, flags: int) -> bytes:
        return self._call(
            OPEN, _string(path) + struct.pack(">I", flags) + NO_ATTRS, HANDLE
        ).string()

    def write_file(
        self, path: str, chunks: Iterable[bytes], *, offset: int = 0, truncate: bool = True
    ) -> int:
        """Write ``chunks`` to ``path`` from ``offset`` (created if absent); returns bytes written.

        Writes are pipelined: up to IN_FLIGHT requests before the first
        answer is read. Only ``CHUNK`` bytes of the input are held at a time.
        """
        flags = FXF_WRITE | FXF_CREAT | (FXF_TRUNC if truncate else 0)
        handle = self._open(path, flags)
        pending: deque[int] = deque()
        written = 0
        try:
            for chunk in chunks:
                for start in range(0, len(chunk), CHUNK):
                    piece = chunk[start : start + CHUNK]
                    payload = _string(handle) + struct.pack(">Q", offset + written) + _string(piece)
                    pending.append(self._send(WRITE, payload))
                    written += len(piece)
                    if len(pending) >= IN_FLIGHT:
                        self._expect(pending.popleft(), STATUS)
            while pending:
                self._expect(pending.popleft(), STATUS)
        finally:
            if not pending:  # else the session is broken: the caller closes it
                self._close_handle(handle)
        return written

    def read_file(self, path: str) -> Iterator[bytes]:
        """``path``'s bytes in order, with up to IN_FLIGHT reads ahead."""
        handle = self._open(path, FXF_READ)
        pending: deque[int] = deque()
        offset = 0
        done = ended = False
        try:
            while not done or pending:
                while not done and len(pending) < IN_FLIGHT:
                    payload = _string(handle) + struct.pack(">QI", offset, CHUNK)
                    pending.append(self._send(READ, payload))
                    offset += CHUNK
                kind, reader = self._answer(pending.popleft())
                if kind == DATA:
                    data = reader.string()
                    if ended:
                        continue  # the file grew after the end was seen: not this download
                    if len(data) < CHUNK:
                        # A short read is the end of a regular file; what is
                        # still in flight is drained and dropped.
                        done = ended = True
                    if data:
                        yield data
                elif kind == STATUS:
                    code, message = self._status(reader)
                    if code != EOF and not ended:
                        raise SftpError(code, message)
                    done = ended = True
                else:
                    raise DriverError(f"unexpected SFTP answer {kind}", permanent=True)
        finally:
            if not pending:
                self._close_handle(handle)
