"""The export's target directory, written without ever following a link or truncating a file.

Every output is created as a fresh temp file inside the directory (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600,
relative to the directory's own descriptor), and renamed over its name only when the whole export is
written: a rename replaces a symlink planted at the name instead of following it, a file the export
reads is never opened for writing, and a failed export leaves the previous one as it was.

Directories the export creates are 0700. An existing target is used as it is (it may be the user's own
directory: the export never chmods what it did not create) unless it is a symlink or writable by group or
others (who could then swap the evidence); a symlinked subdirectory is refused the same way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR)  # what O_NOFOLLOW|O_DIRECTORY reports for a symlink


class ExportError(Exception):
    """The export cannot be written (unreadable journal, no playbook, unsafe target…); the message says
    why."""


def _locations(path: Path) -> set[Path]:
    """The path as written and as resolved: a symlink anywhere on either side must not hide containment."""
    return {Path(os.path.abspath(path)), Path(os.path.realpath(path))}


def holds(out: Path, journal: Path) -> bool:
    """Whether an export into `out` would write where the journal is: `out` or the `artefacts/` written in
    it is the journal's own directory (through links either way), or `out` is the journal itself."""
    pairs = [(j, o) for j in _locations(journal) for o in _locations(out)]
    return any(j == o or j.parent in (o, o / "artefacts") for j, o in pairs)


def check_export_target(journal: Path, out: Path) -> None:
    """Refuse an output directory that holds the journal (the export would write over its own source)."""
    if holds(out, journal):
        raise ExportError(
            f"refusing to export into {out}: it contains the session journal {journal}; "
            "choose a directory outside the journal's own"
        )


def _open_dir(path: Path, name: str | Path, *, dir_fd: int | None = None) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise ExportError(
                f"refusing to write into {path}: not a directory (a symlink is never followed)"
            ) from exc
        raise ExportError(f"cannot open {path}: {exc.strerror}") from exc


def _mkdir_private(path: Path, name: str | Path, *, dir_fd: int | None = None) -> bool:
    """Create directory `name` 0700 (exactly, whatever the umask); False when the name is already taken."""
    try:
        os.mkdir(name, PRIVATE_DIR, dir_fd=dir_fd)
    except FileExistsError:
        return False
    except OSError as exc:
        raise ExportError(f"cannot create {path}: {exc.strerror}") from exc
    fd = _open_dir(path, name, dir_fd=dir_fd)
    try:
        os.fchmod(fd, PRIVATE_DIR)
    finally:
        os.close(fd)
    return True


def _check_existing(fd: int, path: Path) -> None:
    mode = os.fstat(fd).st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ExportError(
            f"refusing to export into {path}: it is writable by others (mode {stat.S_IMODE(mode):o}), "
            "who could swap the evidence; use a new directory (the export creates it 0700)"
        )


@dataclass
class _Staged:
    name: str
    tmp: str
    fd: int


class OutputDir:
    """One directory of the export, opened once; files are staged in it and committed together."""

    def __init__(self, path: Path, fd: int, source: Path | None, source_id: tuple[int, int] | None) -> None:
        self.path, self.fd = path, fd
        self._source, self._source_id = source, source_id  # the journal, never to be replaced or held
        self._staged: list[_Staged] = []
        self._subdirs: list[OutputDir] = []
        self._new_subdirs: list[str] = []  # removed again if the export fails
        self._committed = False

    @classmethod
    def open(cls, path: Path, *, source: Path | None = None) -> OutputDir:
        """Open the target dir, creating what is missing 0700 (`source`: the journal it must not hold)."""
        path = Path(path)
        source_id = None
        if source is not None:
            check_export_target(source, path)
            st = os.stat(source)
            source_id = (st.st_dev, st.st_ino)
        missing = []
        for parent in (path, *path.parents):
            if os.path.lexists(parent):
                break
            missing.append(parent)
        created = False
        for directory in reversed(missing):
            created = _mkdir_private(directory, directory)
        fd = _open_dir(path, path)
        out = cls(path, fd, source, source_id)
        try:
            if not created:
                _check_existing(fd, path)
            out._refuse_hard_link_to_source()
        except BaseException:
            out.close()
            raise
        return out

    def _is_source(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) == self._source_id

    def _refuse_hard_link_to_source(self) -> None:
        if self._source_id is None:
            return
        with os.scandir(self.fd) as entries:
            for entry in entries:
                if self._is_source(entry.stat(follow_symlinks=False)):
                    raise ExportError(
                        f"refusing to export into {self.path}: {self.path / entry.name} is the session "
                        f"journal {self._source} itself (a hard link); choose another directory"
                    )

    def subdir(self, name: str) -> OutputDir:
        """A subdirectory (created 0700 if missing), never through a symlink; committed with this one."""
        path = self.path / name
        created = _mkdir_private(path, name, dir_fd=self.fd)
        if created:
            self._new_subdirs.append(name)
        sub = OutputDir(path, _open_dir(path, name, dir_fd=self.fd), self._source, self._source_id)
        self._subdirs.append(sub)
        if not created:
            _check_existing(sub.fd, path)
        return sub

    def create(self, name: str) -> int:
        """A descriptor to a fresh private temp file that becomes `name` at `commit()`."""
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, _NEW_FILE_FLAGS, PRIVATE_FILE, dir_fd=self.fd)
        self._staged.append(_Staged(name, tmp, fd))
        os.fchmod(fd, PRIVATE_FILE)  # exactly 0600, whatever the umask
        return fd

    def write(self, name: str, data: bytes) -> None:
        with open(self.create(name), "wb", closefd=False) as fh:
            fh.write(data)

    def _all(self) -> list[OutputDir]:
        return [self, *(d for sub in self._subdirs for d in sub._all())]

    def _check_replaceable(self, name: str) -> None:
        try:
            st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise ExportError(f"refusing to write {self.path / name}: it is a symlink (never followed)")
        if not stat.S_ISREG(st.st_mode):
            raise ExportError(f"refusing to write {self.path / name}: it is not a regular file")
        if self._is_source(st):
            raise ExportError(
                f"refusing to write {self.path / name}: it is the session journal {self._source}"
            )

    def commit(self) -> None:
        """Check every name first, then rename each temp file over its name (replacing a previous export)."""
        dirs = self._all()
        for d in dirs:
            for staged in d._staged:
                d._check_replaceable(staged.name)
        for d in dirs:
            for staged in d._staged:
                os.replace(staged.tmp, staged.name, src_dir_fd=d.fd, dst_dir_fd=d.fd)
                staged.tmp = ""
        self._committed = True

    def close(self) -> None:
        """Remove uncommitted temp files (and the subdirectories made for them), close every descriptor."""
        dirs = self._all()
        for d in dirs:
            for staged in d._staged:
                os.close(staged.fd)
                if staged.tmp:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(staged.tmp, dir_fd=d.fd)
            d._staged.clear()
        for d in dirs:
            if not self._committed:
                for name in d._new_subdirs:
                    with contextlib.suppress(OSError):
                        os.rmdir(name, dir_fd=d.fd)
            if d.fd >= 0:
                os.close(d.fd)
                d.fd = -1
        self._subdirs.clear()

    def __enter__(self) -> OutputDir:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
