"""An initramfs writer (cpio "newc", gzip).

Written here rather than calling cpio(1) because the archive must hold
root-owned files and a /dev/console device node, which a user without root
cannot create on disk, and because fixed mtimes make the archive
reproducible (same inputs, same bytes). The format is the kernel's
(Documentation/driver-api/early-userspace/buffer-format.rst): a 110-byte
ASCII header per entry, name and data each padded to 4 bytes."""

from __future__ import annotations

import gzip
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Union


@dataclass
class Entry:
    mode: int
    data: bytes = b""
    rdev: tuple = (0, 0)


@dataclass
class Archive:
    entries: Dict[str, Entry] = field(default_factory=dict)

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.entries:
                self.entries[d] = Entry(stat.S_IFDIR | 0o755)

    def dir(self, path: str, mode: int = 0o755) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = Entry(stat.S_IFDIR | mode)

    def file(self, path: str, data: Union[bytes, str], mode: int = 0o644) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = Entry(stat.S_IFREG | mode, data.encode() if isinstance(data, str) else data)

    def copy(self, path: str, source: Path, mode: int | None = None) -> None:
        real = source.resolve()
        self.file(path, real.read_bytes(), mode if mode is not None else stat.S_IMODE(real.stat().st_mode))

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = Entry(stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = Entry(stat.S_IFCHR | mode, rdev=(major, minor))

    def to_bytes(self) -> bytes:
        out = bytearray()
        # Parents before children: sorted paths put "a" before "a/b".
        for ino, (name, e) in enumerate(sorted(self.entries.items()) + [("TRAILER!!!", Entry(0))], start=1):
            _append(out, ino, name, e)
        return bytes(out)

    def write_gz(self, path: Path) -> None:
        # Renamed into place: a guest booting the previous archive keeps it.
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(gzip.compress(self.to_bytes(), compresslevel=6, mtime=0))
        tmp.replace(path)


def _append(out: bytearray, ino: int, name: str, e: Entry) -> None:
    nameb = name.encode() + b"\0"
    fields = [ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, e.rdev[0], e.rdev[1], len(nameb), 0]
    out += b"070701" + b"".join(b"%08X" % v for v in fields)
    out += nameb
    out += b"\0" * (-len(out) % 4)
    out += e.data
    out += b"\0" * (-len(out) % 4)
