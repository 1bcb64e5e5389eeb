"""Files of a user's volume (``/root``) for the dashboard's files page (issue 13).

Every operation runs through the cluster driver's :meth:`open_files`: OpenSSH's
``sftp-server`` inside a sandbox over the user's volume, as the user's uid.
The portal never opens a path of a volume itself; what the student types
(folder names, file names, the path being browsed) is only ever a string in
an SFTP request to that sandboxed server. So a symlink in ``/root`` to ``/``
or to another user's volume resolves inside the sandbox, where neither
exists. On top of that the page stays inside ``/root``: a path whose real
path (resolved by the server) leaves ``/root`` is "not found", so the page
does not browse the sandbox's own ``/usr`` either.

Uploads come in chunks (the browser slices each file; see
``static/js/files.js``) written at their offset into ``.<name>.part``, renamed
over ``<name>`` when the last byte is in: no request holds more than one
chunk, whatever the size of the file, and a broken upload never leaves a
half file under the real name. The storage allowance is checked with the
declared size before the first byte is written (:func:`upload_check`).
"""

from __future__ import annotations

import posixpath
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from aladdin.cluster import get_driver
from aladdin.cluster.sftp import NO_SUCH_FILE, PERMISSION_DENIED, Attrs, SftpClient, SftpError
from aladdin.lib.errors import DomainError

from .choices import GIB
from .selectors import allowance_gib

if TYPE_CHECKING:
    from aladdin.accounts.models import User

ROOT = "/root"
MAX_NAME_BYTES = 255
PART_SUFFIX = ".part"


class FilesError(DomainError):
    """A files request refused: bad name, a name that exists, a broken upload."""

    http_status = 400
    error_code = "invalid"


class FileNotFound(FilesError):
    """No such file or folder under /root (or one that leads out of it)."""

    http_status = 404
    error_code = "not_found"


class StorageAllowanceExceeded(DomainError):  # noqa: N818 - reads as the condition
    """An upload that would take the volume past the allowance: asked, used and allowed bytes."""

    http_status = 413
    error_code = "storage_allowance_exceeded"

    def __init__(self, *, asked: int, used: int, allowed: int):
        self.asked, self.used, self.allowed = asked, used, allowed
        super().__init__(
            _(
                "Not uploaded: this needs %(asked)s, and you use %(used)s GiB of your "
                "%(allowed)s GiB storage allowance (%(free)s free). Delete files, or expand "
                "your storage on the Storage page, then try again."
            )
            % {
                "asked": filesizeformat(asked),
                "used": f"{used / GIB:.2f}",
                "allowed": f"{allowed / GIB:g}",
                "free": filesizeformat(max(allowed - used, 0)),
            }
        )


@dataclass(frozen=True)
class FileRow:
    """One entry of a folder as the page shows it."""

    name: str
    path: str  # relative to /root, "/"-separated
    is_dir: bool
    is_link: bool
    size: int | None
    modified: datetime | None


def clean_path(path: str) -> str:
    """A path relative to /root ("" is /root itself): no "..", ".", empty parts or NUL."""
    parts = [p for p in (path or "").split("/") if p]
    for part in parts:
        clean_name(part)
    return "/".join(parts)


def clean_name(name: str) -> str:
    """One file or folder name a student typed: not a path, not "." or "..", at most 255 bytes."""
    name = (name or "").strip()
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise FilesError(_('"%(name)s" is not a file name.') % {"name": name})
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise FilesError(_("A name may have at most 255 bytes."))
    return name


def _absolute(rel: str) -> str:
    return f"{ROOT}/{rel}" if rel else ROOT


def _translated(exc: SftpError) -> FilesError:
    if exc.status == NO_SUCH_FILE:
        return FileNotFound(_("No such file or folder."))
    if exc.status == PERMISSION_DENIED:
        return FilesError(_("Permission denied."))
    return FilesError(_("The volume refused this (%(reason)s).") % {"reason": str(exc)})


@contextmanager
def _session(user: User) -> Iterator[SftpClient]:
    """An SFTP session over the user's volume; SFTP refusals become the page's errors."""
    client = SftpClient(get_driver().open_files(user_id=user.pk))
    try:
        yield client
    except SftpError as exc:
        raise _translated(exc) from None
    finally:
        client.close()


def _inside(client: SftpClient, rel: str) -> str:
    """``rel``'s real path as the sandbox resolves it; FileNotFound unless it is under /root."""
    try:
        real = client.realpath(_absolute(rel))
    except SftpError as exc:
        raise _translated(exc) from None
    if real != ROOT and not real.startswith(ROOT + "/"):
        raise FileNotFound(_("No such file or folder."))
    return real


def _modified(attrs: Attrs) -> datetime | None:
    return datetime.fromtimestamp(attrs.mtime, UTC) if attrs.mtime is not None else None


# --- reads -------------------------------------------------------------------------
def file_exists(*, user: User, path: str) -> bool | None:
    """Whether ``path`` (absolute, under /root) is a file in the user's volume, as the sandbox sees it.

    For refusing a launch whose entry file is missing before anything is
    charged. None when this backend has no files access or cannot be reached
    now: the caller then cannot tell and goes on (the workload reports it).
    """
    from aladdin.cluster.base import DriverError

    if path != ROOT and not path.startswith(ROOT + "/"):
        return False
    try:
        client = SftpClient(get_driver().open_files(user_id=user.pk))
    except DriverError:
        return None
    try:
        attrs = client.stat(path)
    except SftpError as exc:
        if exc.status == NO_SUCH_FILE:
            return False
        return None
    except (DriverError, OSError):
        return None
    finally:
        client.close()
    return attrs.permissions is not None and stat.S_ISREG(attrs.permissions)


def files_list(*, user: User, path: str) -> list[FileRow]:
    """The folder ``path`` (relative to /root): folders first, then files, by name."""
    rel = clean_path(path)
    with _session(user) as client:
        real = _inside(client, rel)
        if not client.stat(real).is_dir:
            raise FileNotFound(_("No such file or folder."))
        entries = client.listdir(real)
        rows = []
        for entry in entries:
            attrs = entry.attrs
            is_dir = attrs.is_dir
            if attrs.is_link:
                # Shown as what it points to, when that is a folder inside /root.
                try:
                    target = client.realpath(f"{real}/{entry.name}")
                    is_dir = (target == ROOT or target.startswith(ROOT + "/")) and client.stat(
                        target
                    ).is_dir
                except SftpError:
                    is_dir = False
            rows.append(
                FileRow(
                    name=entry.name,
                    path=posixpath.join(rel, entry.name),
                    is_dir=is_dir,
                    is_link=attrs.is_link,
                    size=None if is_dir else attrs.size,
                    modified=_modified(attrs),
                )
            )
    rows.sort(key=lambda r: (not r.is_dir, r.name.lower(), r.name))
    return rows


@dataclass
class Download:
    """A file being read: its name and size, and its bytes (the session closes at their end)."""

    name: str
    size: int | None
    chunks: Iterator[bytes]


def file_download(*, user: User, path: str) -> Download:
    """Open ``path`` for reading; iterate (or close) ``chunks`` to end the session."""
    rel = clean_path(path)
    if not rel:
        raise FileNotFound(_("No such file or folder."))
    client = SftpClient(get_driver().open_files(user_id=user.pk))
    try:
        real = _inside(client, rel)
        attrs = client.stat(real)
        if not attrs.is_file:
            raise FileNotFound(_("No such file or folder."))
    except SftpError as exc:
        client.close()
        raise _translated(exc) from None
    except BaseException:
        client.close()
        raise

    def chunks() -> Iterator[bytes]:
        try:
            yield from client.read_file(real)
        finally:
            client.close()

    return Download(name=posixpath.basename(rel), size=attrs.size, chunks=chunks())


def usage_now(*, user: User) -> int:
    """Bytes in the volume now, measured by the driver (not the last nightly sample)."""
    return get_driver().storage_usage_bytes(user_id=user.pk)


def upload_check(*, user: User, size: int) -> None:
    """Raise StorageAllowanceExceeded if ``size`` more bytes would pass the allowance."""
    if size < 0:
        raise FilesError(_("A size cannot be negative."))
    allowed = allowance_gib(user) * GIB
    used = usage_now(user=user)
    if used + size > allowed:
        raise StorageAllowanceExceeded(asked=size, used=used, allowed=allowed)


# --- writes ------------------------------------------------------------------------
def file_upload_chunk(
    *, user: User, folder: str, name: str, offset: int, total: int, chunks: Iterable[bytes]
) -> int:
    """Write one chunk of an upload at ``offset``; at the end, the file takes its name.

    The first chunk (``offset`` 0) checks the allowance with ``total`` (the
    declared size) before anything is written and starts ``.<name>.part``
    afresh; later chunks must continue exactly where it ends. Returns the
    bytes now in the file.
    """
    rel = clean_path(folder)
    name = clean_name(name)
    if offset < 0 or total < 0 or offset > total:
        raise FilesError(_("This upload's offsets are not valid."))
    if offset == 0:
        upload_check(user=user, size=total)
    with _session(user) as client:
        real = _inside(client, rel)
        part = f"{real}/.{name}{PART_SUFFIX}"
        if offset:
            try:
                have = client.lstat(part)
            except SftpError:
                have = Attrs()
            if not have.is_file or have.size != offset:
                raise FilesError(_("This upload was interrupted: upload the file again."))
        written = client.write_file(part, chunks, offset=offset, truncate=offset == 0)
        end = offset + written
        if end > total:
            client.remove(part)
            raise FilesError(_("The file is larger than its declared size: upload it again."))
        if end == total:
            final = f"{real}/{name}"
            try:
                if client.lstat(final).is_dir:
                    client.remove(part)
                    raise FilesError(_("A folder named %(name)s exists here.") % {"name": name})
            except SftpError as exc:
                if exc.status != NO_SUCH_FILE:
                    raise
            client.posix_rename(part, final)
    return end


def folder_create(*, user: User, folder: str, name: str) -> None:
    """Make the folder ``name`` in ``folder``."""
    rel = clean_path(folder)
    name = clean_name(name)
    with _session(user) as client:
        real = _inside(client, rel)
        _refuse_existing(client, f"{real}/{name}", name)
        client.mkdir(f"{real}/{name}")


def file_rename(*, user: User, path: str, new_name: str) -> None:
    """Rename ``path`` (a file, folder or link) within its folder; an existing name is refused."""
    rel = clean_path(path)
    new_name = clean_name(new_name)
    if not rel:
        raise FilesError(_("Your home folder cannot be renamed."))
    folder, old_name = posixpath.split(rel)
    with _session(user) as client:
        real_folder = _inside(client, folder)
        client.lstat(f"{real_folder}/{old_name}")
        _refuse_existing(client, f"{real_folder}/{new_name}", new_name)
        client.rename(f"{real_folder}/{old_name}", f"{real_folder}/{new_name}")


def file_delete(*, user: User, path: str) -> None:
    """Delete ``path``: a file, a link (not what it points to), or a folder with all it holds."""
    rel = clean_path(path)
    if not rel:
        raise FilesError(_("Your home folder cannot be deleted."))
    folder, name = posixpath.split(rel)
    with _session(user) as client:
        real_folder = _inside(client, folder)
        _delete_tree(client, f"{real_folder}/{name}")


def _refuse_existing(client: SftpClient, target: str, name: str) -> None:
    try:
        client.lstat(target)
    except SftpError as exc:
        if exc.status == NO_SUCH_FILE:
            return
        raise
    raise FilesError(_("%(name)s exists already.") % {"name": name})


def _delete_tree(client: SftpClient, target: str) -> None:
    # lstat, never stat: a link is removed itself, its target is never walked.
    attrs = client.lstat(target)
    if attrs.permissions is not None and stat.S_ISDIR(attrs.permissions):
        for entry in client.listdir(target):
            _delete_tree(client, f"{target}/{entry.name}")
        client.rmdir(target)
    else:
        client.remove(target)
