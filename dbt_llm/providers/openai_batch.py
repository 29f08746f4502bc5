"""The OpenAI Batch API over httpx, and its wire format: the JSONL line of one request (whose body is
what OpenAIProvider sends in real time, so both are one request and share the cache) and the lines
of a batch's output and error files. Waiting, matching and retrying are batch.py's job."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from .base import Completion, FatalProviderError, TransientError
from .http import error_message, parse_retry_after, redact
from .openai import completion_of

BATCH_ENDPOINT = "/v1/chat/completions"
# "ended": Anthropic's Message Batches say so of a batch whatever its requests came to (each has a result).
TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled", "ended"})


def request_line(custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """One line of an OpenAI batch input file, for one row or a pack of rows; `body` is what
    OpenAIProvider.complete posts for it (chat_body)."""
    return {"custom_id": custom_id, "method": "POST", "url": BATCH_ENDPOINT, "body": body}


@dataclass(frozen=True)
class RequestCounts:
    total: int = 0
    completed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class BatchStatus:
    """The fields of a batch object that matter to us; times are Unix seconds."""

    id: str
    status: str  # validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    request_counts: RequestCounts = RequestCounts()
    created_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelled_at: int | None = None
    errors: tuple[str, ...] = ()  # why a batch failed as a whole (for example its input file was invalid)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchStatus:
        counts = data.get("request_counts") or {}
        raw_errors = data.get("errors")
        listed = (raw_errors.get("data") or []) if isinstance(raw_errors, dict) else []
        errors = tuple(
            f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line") is not None else "")
            for e in listed
            if isinstance(e, dict)
        )
        return cls(
            id=str(data["id"]),
            status=str(data["status"]),
            input_file_id=data.get("input_file_id"),
            output_file_id=data.get("output_file_id"),
            error_file_id=data.get("error_file_id"),
            request_counts=RequestCounts(
                int(counts.get("total") or 0), int(counts.get("completed") or 0), int(counts.get("failed") or 0)
            ),
            created_at=_seconds(data.get("created_at")),
            completed_at=_seconds(data.get("completed_at")),
            failed_at=_seconds(data.get("failed_at")),
            expired_at=_seconds(data.get("expired_at")),
            cancelled_at=_seconds(data.get("cancelled_at")),
            errors=errors,
        )


def _seconds(value: Any) -> int | None:
    """A Unix time as OpenAI gives it; None for anything else (some compatible servers send other shapes)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ResultLine:
    """One line of an output or error file: a completion, or why the request has none."""

    custom_id: str
    completion: Completion | None = None
    error_kind: str | None = None  # rate_limited, server_error, timeout, bad_request, bad_response, or the API's code
    error: str | None = None


def parse_completion(body: Any) -> Completion:
    """A chat completion body as OpenAIProvider reads it (a refusal has no content); raises ValueError
    when the body is not a chat completion."""
    try:
        return completion_of(body)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a chat completion: {json.dumps(body)[:200]}") from exc


def parse_result_line(line: Mapping[str, Any]) -> ResultLine:
    """Read one parsed JSONL line of an output or error file."""
    custom_id = str(line.get("custom_id"))
    response = line.get("response")
    error = line.get("error")
    if isinstance(response, dict):
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        if status == 200:
            try:
                return ResultLine(custom_id, completion=parse_completion(body))
            except ValueError as exc:
                return ResultLine(custom_id, error_kind="bad_response", error=str(exc))
        message = _body_message(body) or (error or {}).get("message") or "no message"
        if status == 429:
            kind = "rate_limited"
        elif status >= 500 or status == 0:
            kind = "server_error"
        elif status == 408:
            kind = "timeout"
        else:
            kind = "bad_request"
        return ResultLine(custom_id, error_kind=kind, error=f"HTTP {status}: {message}")
    if isinstance(error, dict):
        code = str(error.get("code") or "failed")
        return ResultLine(custom_id, error_kind=code, error=str(error.get("message") or "no message"))
    return ResultLine(custom_id, error_kind="bad_response", error="the line has neither a response nor an error")


def _body_message(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or body["error"])
    return None


def split_jsonl(data: bytes) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL file; a line that is not one is skipped (its key counts as missing)."""
    objects: list[dict[str, Any]] = []
    for raw in data.splitlines():
        try:
            value = json.loads(raw) if raw.strip() else None
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


class BatchApiError(Exception):
    """The API refused a call for a reason retrying does not fix (HTTP 400, 409, 413, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class OpenAIBatchClient:
    """Files and batches of one OpenAI-compatible endpoint. The key is read per call and never
    appears in an error message, even when the server echoes it."""

    max_lines = 50_000  # the Batch API's limits per input file
    max_bytes = 200_000_000

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Callable[[], str],
        api_key_env: str,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        trust_env: bool = True,
        headers: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._headers = headers  # the profile's `headers:`, read per call like the key
        self._api_key_env = api_key_env
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), transport=transport, trust_env=trust_env
        )

    # -- what another dialect of this API changes (Azure OpenAI: providers/azure_batch.py) --
    endpoint = BATCH_ENDPOINT  # the `url` of each line and the `endpoint` of each batch

    def request_line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """One line of this API's input file; `body` is what the realtime provider posts for it."""
        return {"custom_id": custom_id, "method": "POST", "url": self.endpoint, "body": body}

    def wire_id(self, custom_id: str) -> str:
        return custom_id  # any string is a custom_id here

    def parse_result_line(self, line: Mapping[str, Any]) -> ResultLine:
        return parse_result_line(line)

    def url(self, path: str) -> str:
        return self._base + path

    def query(self) -> dict[str, str]:
        """Query parameters of every call."""
        return {}

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def not_found(self, message: str) -> str:
        return (
            f"{message}. Check `base_url` ({self._base}): the endpoint must serve the OpenAI Batch API "
            "(/files and /batches), and the batch or file must belong to this key's project."
        )

    def upload(self, jsonl: bytes, filename: str) -> str:
        """Upload a batch input file; returns its file id."""
        files = {"file": (filename, jsonl, "application/jsonl")}
        data = self._json(self._call("POST", "/files", data={"purpose": "batch"}, files=files))
        return str(data["id"])

    def create(
        self, input_file_id: str, *, completion_window: str = "24h", metadata: Mapping[str, str] | None = None
    ) -> BatchStatus:
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": self.endpoint,
            "completion_window": completion_window,
        }
        if metadata:
            body["metadata"] = dict(metadata)
        return BatchStatus.from_json(self._json(self._call("POST", "/batches", json=body)))

    def get(self, batch_id: str) -> BatchStatus:
        return BatchStatus.from_json(self._json(self._call("GET", f"/batches/{batch_id}")))

    def recent(self, limit: int = 100) -> list[BatchStatus]:
        """The most recent batches, newest first (GET /batches)."""
        data = self._json(self._call("GET", "/batches", params={"limit": limit}))
        return [BatchStatus.from_json(item) for item in data.get("data") or []]

    def cancel(self, batch_id: str) -> BatchStatus:
        return BatchStatus.from_json(self._json(self._call("POST", f"/batches/{batch_id}/cancel")))

    def content(self, file_id: str) -> bytes:
        return self._call("GET", f"/files/{file_id}/content").content

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> OpenAIBatchClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- one HTTP call, its errors sorted into retry / stop / refused --
    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self.url(path)
        key = self._api_key()  # read per call: a rotated key is picked up
        extra = self._headers()
        secrets = [key, *extra.values()]
        what = f"{method} {url}"
        try:
            headers = {**extra, **self.auth(key)}
            params = {**self.query(), **kwargs.pop("params", {})}
            response = self._client.request(method, url, headers=headers, params=params or None, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError("timeout", f"{what} timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            message = redact(f"{what}: connection failed ({type(exc).__name__}: {exc})", secrets)
            raise TransientError("connection", message) from None
        status = response.status_code
        if status < 400:
            return response
        message = redact(f"HTTP {status} from {what}: {error_message(response)}", secrets)
        if status == 429 or status >= 500:
            kind = "rate_limited" if status == 429 else "server_error"
            raise TransientError(kind, message, parse_retry_after(response.headers))
        if status in (401, 403):
            raise FatalProviderError(
                f"the Batch API refused the API key ({message}). "
                f"Check the key in the environment variable {self._api_key_env} (named by `api_key_env`)."
            )
        if status == 404:
            raise FatalProviderError(self.not_found(message))
        raise BatchApiError(status, message)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TransientError(
                "bad_response", f"HTTP {response.status_code} from {response.request.url}: not a JSON object"
            )
        return data
