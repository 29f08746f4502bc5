"""An embedded llama.cpp server speaking the OpenAI chat-completions API on 127.0.0.1, or with
`embedding=True` its /v1/embeddings route (llama.cpp's embedding mode, for an embedding model).

xllamacpp (optional dependency, the `local` extra) runs llama.cpp's own HTTP server inside this process:
`xllamacpp.Server(params)` loads the model, then listens on `params.hostnames`/`params.port` (port 0 picks
a free one) in native threads, until the Server object is deallocated. Requests carry `Authorization:
Bearer <api_key>`: a random key per server, so other local users cannot use the port.

    with LocalServer("qwen2.5-coder-0.5b") as srv:      # or a path to a .gguf file
        base_url = srv.base_url                   # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import atexit
import ctypes
import importlib
import os
import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from .pull import model_path as resolve_model_path
from .registry import MODELS, LocalModelError, canonical

__all__ = [
    "LocalServer",
    "Slots",
    "default_threads",
    "register_exit_hook",
    "served_models",
    "shared_server",
    "stop_shared_servers",
]

DEFAULT_CTX_PER_SLOT = 4096
DEFAULT_PARALLEL = 2
DEFAULT_CACHE_RAM_MIB = 1024
# An embedding model reads each input whole in one batch (no causal attention to split it over): the batch
# is a slot's context, that of the BERT-style models llama.cpp embeds (nomic-embed-text: 2,048 tokens).
EMBED_CTX_PER_SLOT = 2048


def default_threads() -> int:
    """Half the CPUs this process may run on (at least 1).

    llama.cpp's compute threads wait on each other at every step, so when any of them is descheduled
    (dbt, DuckDB or other programs using the CPU) all of them stall: on 2 busy vCPUs, 2 threads decoded
    ~10x slower than 1. Half the CPUs is also about the physical cores on SMT machines, which is what
    llama.cpp itself recommends."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // 2)


def _import_xllamacpp() -> Any:
    # importlib keeps mypy from needing stubs (or the package) for this optional dependency.
    try:
        return importlib.import_module("xllamacpp")
    except ImportError as exc:
        raise LocalModelError(
            "the local provider needs xllamacpp, which is not installed: pip install 'dbt-llm[local]'"
        ) from exc


@dataclass(frozen=True)
class Slots:
    """How llama.cpp serves: `n_parallel` slots of `ctx_per_slot` tokens (prompt + answer) each, on
    `n_threads` compute threads (default: half the CPUs), with a prompt cache of `cache_ram_mib`.
    llama.cpp gets n_ctx = ctx_per_slot * n_parallel and splits it evenly between the slots."""

    ctx_per_slot: int = DEFAULT_CTX_PER_SLOT
    n_parallel: int = DEFAULT_PARALLEL
    n_threads: int | None = None
    cache_ram_mib: int = DEFAULT_CACHE_RAM_MIB

    @property
    def threads(self) -> int:
        assert self.n_threads is not None  # set in __post_init__
        return self.n_threads

    def __post_init__(self) -> None:
        if self.n_threads is None:  # resolved now, so equal settings make equal keys of shared_server
            object.__setattr__(self, "n_threads", default_threads())
        if self.ctx_per_slot < 256:
            raise LocalModelError(f"ctx_per_slot must be at least 256, got {self.ctx_per_slot}")
        if self.n_parallel < 1:
            raise LocalModelError(f"n_parallel must be at least 1, got {self.n_parallel}")
        if self.threads < 1:
            raise LocalModelError(f"n_threads must be at least 1, got {self.n_threads}")


class LocalServer:
    """One llama.cpp server for one model file, served as `slots` says. `start()` and `stop()` are
    idempotent and thread-safe."""

    def __init__(
        self,
        model: str | os.PathLike[str],
        slots: Slots | None = None,
        *,
        startup_timeout: float = 120.0,
        api_key: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        embedding: bool | None = None,
    ) -> None:
        self.slots = slots or Slots()
        self.embedding = _embedding_mode(model, embedding)
        self.model_path: Path = resolve_model_path(model, cache_dir)
        self.startup_timeout = startup_timeout
        self.api_key = api_key or f"dbt-llm-local-{secrets.token_urlsafe(24)}"
        self._lock = threading.Lock()
        self._server: Any = None
        self._params: Any = None
        self._base_url: str | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT/v1`; raises when the server is not running."""
        url = self._base_url
        if url is None:
            raise LocalModelError("the local model server is not running: call start() first")
        return url

    @property
    def model_name(self) -> str:
        """The `model` value the server reports (it accepts any value in requests)."""
        return str(self.model_path)

    def _make_params(self, xllamacpp: Any) -> Any:
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        slots = self.slots
        params.n_parallel = slots.n_parallel
        params.n_ctx = slots.ctx_per_slot * slots.n_parallel
        params.cpuparams.n_threads = slots.threads
        params.cpuparams_batch.n_threads = slots.threads
        params.verbosity = -1
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [self.api_key]
        params.ui = False
        params.offline = True
        params.endpoint_slots = False
        params.endpoint_metrics = True  # stop() reads requests_processing / requests_deferred
        params.cache_ram_mib = slots.cache_ram_mib
        if self.embedding:  # pooling (mean, for nomic-embed) and L2 normalising are the file's and llama.cpp's defaults
            params.embedding = True
            params.n_ctx = EMBED_CTX_PER_SLOT * slots.n_parallel
            params.n_batch = params.n_ubatch = EMBED_CTX_PER_SLOT
            params.cache_ram_mib = 0  # no prompt is ever continued
        return params

    def start(self) -> str:
        """Load the model, wait until the server answers /health, and return its base_url."""
        with self._lock:
            if self._base_url is not None:
                return self._base_url
            xllamacpp = _import_xllamacpp()
            params = self._make_params(xllamacpp)
            try:
                server = xllamacpp.Server(params)
            except RuntimeError as exc:
                raise LocalModelError(f"llama.cpp could not load {self.model_path}: {exc}") from exc
            address = str(server.listening_address or "").rstrip("/")
            if not address.startswith("http://127.0.0.1:"):
                del server
                raise LocalModelError(f"llama.cpp's HTTP server did not start (listening address {address!r})")
            try:
                self._wait_healthy(address)
            except BaseException:
                del server
                raise
            self._server, self._params = server, params
            self._base_url = f"{address}/v1"
            return self._base_url

    def _wait_healthy(self, address: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer"
        with httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0), trust_env=False) as client:
            while True:
                try:
                    response = client.get(f"{address}/health")
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    raise LocalModelError(
                        f"the local model server at {address} was not healthy after {self.startup_timeout:.0f} s "
                        f"({last})"
                    )
                time.sleep(0.05)

    def stop(self, drain_timeout: float = 60.0) -> None:
        """Stop listening and free the model.

        llama.cpp stops when the Server object is deallocated, and its destructor joins the HTTP threads
        while holding the GIL: a request whose client is still connected (say an httpx call in another
        thread of this process) would then never finish. So this first waits, up to `drain_timeout`
        seconds, until the server reports no request processing or queued; if it is still busy then,
        the server is left running (pinned, never deallocated) rather than risk that deadlock, and is
        reclaimed when the process exits.
        """
        with self._lock:
            server, address = self._server, self._base_url
            self._server, self._params, self._base_url = None, None, None
        if server is None or address is None:
            return
        if not self._drain(address.removesuffix("/v1"), drain_timeout):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(server))
            _abandoned.append(server)
            warnings.warn(
                f"the local model server at {address} was still busy after {drain_timeout:.0f} s; "
                "it is left running until the process exits",
                RuntimeWarning,
                stacklevel=2,
            )
            return
        del server

    def _drain(self, address: str, timeout: float) -> bool:
        """Wait until llama.cpp reports no request processing nor deferred (two polls in a row)."""
        deadline = time.monotonic() + timeout
        idle_polls = 0
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(timeout=httpx.Timeout(5.0, connect=2.0), headers=headers, trust_env=False) as client:
            while True:
                try:
                    busy = _busy_requests(client.get(f"{address}/metrics").text)
                except httpx.HTTPError:
                    busy = None
                if busy is None:  # no answer: nothing more to wait for
                    return True
                idle_polls = idle_polls + 1 if busy == 0 else 0
                if idle_polls >= 2:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self._base_url or "stopped"
        mode = ", embedding" if self.embedding else ""
        return f"LocalServer({str(self.model_path)!r}, n_parallel={self.slots.n_parallel}{mode}, {state})"


def _embedding_mode(model: str | os.PathLike[str], embedding: bool | None) -> bool:
    """A registry model is served as its kind says (llama.cpp aborts the process when it loads an embedding
    model to chat); a model file as asked (default: chat)."""
    entry = MODELS.get(canonical(os.fspath(model)))
    if entry is None:
        return bool(embedding)
    if embedding is not None and embedding != (entry.kind == "embedding"):
        kind = "an embedding" if entry.kind == "embedding" else "a chat"
        use = "for embeddings" if embedding else "for chat completions"
        raise LocalModelError(f"local model {entry.name!r} is {kind} model: it cannot be served {use}")
    return entry.kind == "embedding"


def _busy_requests(metrics: str) -> int | None:
    """requests_processing + requests_deferred from llama.cpp's Prometheus text (None if absent)."""
    values: dict[str, float] = {}
    for line in metrics.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("llamacpp:requests_processing", "llamacpp:requests_deferred"):
            try:
                values[parts[0]] = float(parts[1])
            except ValueError:
                return None
    if len(values) != 2:
        return None
    return int(sum(values.values()))


_abandoned: list[Any] = []
_shared: dict[tuple[Any, ...], LocalServer] = {}
_shared_lock = threading.Lock()
_atexit_registered = False


def shared_server(
    model: str | os.PathLike[str],
    slots: Slots | None = None,
    *,
    startup_timeout: float = 120.0,
    cache_dir: str | os.PathLike[str] | None = None,
    embedding: bool | None = None,
) -> LocalServer:
    """The one running server of this process for (model file, slots, mode); started on first use."""
    embedding = _embedding_mode(model, embedding)
    path = resolve_model_path(model, cache_dir)
    slots = slots or Slots()
    key = (str(path), slots, embedding)
    register_exit_hook()
    with _shared_lock:
        server = _shared.get(key)
        if server is None:
            server = LocalServer(path, slots, startup_timeout=startup_timeout, embedding=embedding)
            _shared[key] = server
    server.start()  # idempotent; outside the registry lock so other models are not held up
    return server


def served_models() -> list[Path]:
    """The model files this process's shared servers run now."""
    with _shared_lock:
        return sorted({server.model_path for server in _shared.values() if server.running})


def register_exit_hook() -> None:
    """Stop the shared servers at interpreter exit. atexit runs hooks last-registered first: a caller
    that must close its connections before the servers stop registers its hook after calling this."""
    global _atexit_registered
    with _shared_lock:
        if not _atexit_registered:
            atexit.register(stop_shared_servers)
            _atexit_registered = True


def stop_shared_servers() -> None:
    """Stop every server started by shared_server (also run at interpreter exit)."""
    with _shared_lock:
        servers = list(_shared.values())
        _shared.clear()
    for server in servers:
        server.stop()
