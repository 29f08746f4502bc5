"""HTTP plumbing shared by the fake OpenAI servers of the tests and benchmarks.

``openai_server.FakeOpenAI`` and ``ratelimited_server.RateLimitedOpenAI`` both answer
``POST /v1/chat/completions`` and ``GET /v1/models`` on ``127.0.0.1`` from a daemon thread.
What they do alike lives here: the server and handler classes, start/stop, reading the request
body, the API-key check, OpenAI-style error and completion bodies, and the server-side faults
(500, 503, an HTML 502 and a hung connection).  What a server answers is up to its ``_handle_chat``;
any other URL goes to its ``_handle_extra`` (the Batch API of ``FakeOpenAI``), then is a 404.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, TypeVar, cast

MODEL_ID = "fake-gpt"
BAD_GATEWAY_HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


# --------------------------------------------------------------------------- #
# Request and response bodies
# --------------------------------------------------------------------------- #


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    """An OpenAI-style ``{"error": ...}`` body."""
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


def load_json(raw: bytes) -> Any:
    """The request body parsed as JSON; ``None`` when it is empty or not JSON (the caller answers 400)."""
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


def content_text(content: Any) -> str:
    """The text of a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return ""


def message_chars(messages: Any) -> int:
    """Characters of the text content of all messages."""
    if not isinstance(messages, list):
        return 0
    return sum(len(content_text(m.get("content"))) for m in messages if isinstance(m, dict))


def estimate_tokens(chars: int) -> int:
    """Usage tokens for ``chars`` characters: about 4 characters a token, at least 1."""
    return max(1, math.ceil(chars / 4))


def response_format(body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    """The JSON schema a request asks for (``{}`` when it is unusable) and whether it asks for a JSON object."""
    schema: dict[str, Any] | None = None
    wants_json = False
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        wants_json = fmt.get("type") == "json_object"
        json_schema = fmt.get("json_schema")
        if fmt.get("type") == "json_schema" and isinstance(json_schema, dict):
            candidate = json_schema.get("schema")
            schema = candidate if isinstance(candidate, dict) else {}
    return schema, wants_json


def chat_completion_dict(
    completion_id: str,
    model: str,
    content: str,
    *,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int | None = None,
    logprobs: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A non-streaming ``chat.completion`` with one choice and its usage.

    ``usage.prompt_tokens_details.cached_tokens`` is there only when ``cached_tokens`` is given;
    ``choices[0].logprobs`` is ``{"content": logprobs}`` when they are given, else null.
    """
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def chat_completion(
    completion_id: str,
    model: str,
    content: str,
    *,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int | None = None,
) -> bytes:
    """``chat_completion_dict`` as a JSON body."""
    response = chat_completion_dict(
        completion_id,
        model,
        content,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=cached_tokens,
    )
    return json.dumps(response).encode()


@dataclass(frozen=True)
class Reply:
    """A whole HTTP answer, built before it is written (so it can be recorded first)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def server_fault_reply(kind: str | None, headers: Mapping[str, str] | None = None) -> Reply | None:
    """The answer for a server-side fault (``"500"``, ``"503"``, ``"502_html"``); ``None`` for any other kind."""
    if kind == "500":
        message = "The server had an error while processing your request."
        return Reply(500, error_body(message, "server_error", None), headers or {})
    if kind == "503":
        message = "The server is overloaded or not ready yet."
        return Reply(503, error_body(message, "server_error", None), headers or {})
    if kind == "502_html":
        # A gateway in front of the provider answers this one: none of the provider's headers.
        return Reply(502, BAD_GATEWAY_HTML, {}, "text/html")
    return None


# --------------------------------------------------------------------------- #
# HTTP server, handler and lifecycle
# --------------------------------------------------------------------------- #


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that hands requests to its ``owner``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: FakeService, port: int = 0) -> None:
        self.owner = owner
        self.request_queue_size = owner._queue_size  # read by listen() inside super().__init__
        super().__init__(("127.0.0.1", port), owner._handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out and hang up (the point of the hang faults) are not server errors.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FakeHandler(BaseHTTPRequestHandler):
    """Routes the two endpoints to the owning server; subclasses set the per-server details below."""

    protocol_version = "HTTP/1.1"
    sys_version = ""
    disable_nagle_algorithm = True

    owned_by: ClassVar[str]  # "owned_by" of the one model that GET /v1/models lists
    unknown_url_code: ClassVar[str | None]  # error "code" of a 404
    models_need_auth: ClassVar[bool]  # whether GET /v1/models checks the API key too
    bad_body_message: ClassVar[str]  # error message of a 400 for an unreadable body
    max_body_bytes: ClassVar[int | None]  # a larger (or negative) Content-Length is a 400; None: no limit

    @property
    def owner(self) -> FakeService:
        return cast(LoopbackHTTPServer, self.server).owner

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        self.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.owner._track(self.connection, add=False)

    def route(self) -> str:
        """The request path without query string or trailing slash."""
        return self.path.split("?", 1)[0].rstrip("/")

    def read_body(self) -> bytes:
        """The request body, chunked or by Content-Length; ``ValueError`` when it is malformed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if self.max_body_bytes is not None and not 0 <= length <= self.max_body_bytes:
            raise ValueError(f"bad Content-Length {length}")
        return self.rfile.read(length) if length > 0 else b""

    def send_body(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_reply(self, reply: Reply) -> None:
        self.send_body(reply.status, reply.body, content_type=reply.content_type, headers=reply.headers)

    def authorized(self) -> bool:
        key = self.owner.api_key
        return key is None or self.headers.get("Authorization") == f"Bearer {key}"

    def send_unauthorized(self) -> None:
        self.send_body(401, error_body("Incorrect API key provided", "invalid_request_error", "invalid_api_key"))

    def send_not_found(self) -> None:
        message = f"Unknown request URL: {self.command} {self.path}"
        self.send_body(404, error_body(message, "invalid_request_error", self.unknown_url_code))

    def seen(self) -> None:
        """Record this request's method, path and headers (gateway headers must reach every request)."""
        with self.owner._lock:
            self.owner.seen_headers.append((self.command, self.route(), dict(self.headers.items())))

    def do_GET(self) -> None:
        self.seen()
        if self.route() != "/v1/models":
            if not self.owner._handle_extra(self, "GET", b""):
                self.send_not_found()
            return
        if self.models_need_auth and not self.authorized():
            self.send_unauthorized()
            return
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": self.owned_by}
        body = {"object": "list", "data": [model]}
        self.send_body(200, json.dumps(body).encode())

    def do_POST(self) -> None:
        self.seen()
        try:
            raw = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True  # the rest of the stream cannot be parsed as requests
            self.send_body(400, error_body(self.bad_body_message, "invalid_request_error", None))
            return
        if self.route() != "/v1/chat/completions":
            if not self.owner._handle_extra(self, "POST", raw):
                self.send_not_found()
            return
        self.owner._handle_chat(self, raw)


_Service = TypeVar("_Service", bound="FakeService")  # typing.Self needs Python 3.11; we support 3.10


class FakeService:
    """Start/stop and connection bookkeeping of a fake server; subclasses answer the chat requests."""

    _handler: ClassVar[type[FakeHandler]]
    _queue_size: ClassVar[int]  # listen() backlog: benchmarks open hundreds of connections at once
    _thread_name: ClassVar[str]

    def __init__(self, *, api_key: str | None, hang_seconds: float) -> None:
        self.api_key = api_key
        self.hang_seconds = hang_seconds
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # set by stop(): wakes handlers waiting out latency or a hang
        self._connections: set[socket.socket] = set()
        self._server: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._counter = 0
        self.seen_headers: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) of each request

    def _handle_chat(self, handler: FakeHandler, raw: bytes) -> None:
        raise NotImplementedError

    def _handle_extra(self, handler: FakeHandler, method: str, raw: bytes) -> bool:
        """Answer a request for any other URL; ``False`` (the default) when this server has no such URL."""
        return False

    def _starting(self) -> None:
        """Called by ``start()`` just before it binds."""

    def start(self: _Service, port: int = 0) -> _Service:
        """Bind 127.0.0.1 (on a free port unless ``port`` is given) and serve on a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._starting()
        server = LoopbackHTTPServer(self, port)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=self._thread_name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; hung and keep-alive connections are closed too."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self: _Service) -> _Service:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _hang(self, handler: FakeHandler) -> None:
        """Hold the connection ``hang_seconds`` (or until ``stop()``), then drop it without an answer."""
        self._stopping.wait(self.hang_seconds)
        handler.close_connection = True
