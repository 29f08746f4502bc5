"""Anthropic's Message Batches API over httpx (`mode: batch` with `provider: anthropic`): a batch is
created with its requests inline (`POST /v1/messages/batches`), polled until `processing_status` is
`ended`, and its results read from `results_url` (JSON lines in any order, matched by custom_id).
Waiting, matching and retrying are batch/runner.py's job, as for OpenAI's Batch API."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from .anthropic import completion_of, messages_body, raise_for_status, request_headers
from .base import FatalProviderError, RowError, TransientError
from .http import redact, shown_url
from .openai_batch import BatchApiError, BatchStatus, RequestCounts, ResultLine, split_jsonl

BATCHES_PATH = "/v1/messages/batches"
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A batch whose create answer was lost is looked for among batches created since a little before the
# attempt (the server's clock may differ from ours), with as many requests.
_CLOCK_SLACK = 300.0
# errored results: the error's type in the engine's words (a 400's kinds are final, the rest retried).
_ERROR_KINDS = {
    "invalid_request_error": "bad_request",
    "rate_limit_error": "rate_limited",
    "overloaded_error": "server_error",
    "api_error": "server_error",
    "timeout_error": "timeout",
}


def wire_id(custom_id: str) -> str:
    """A custom_id as Anthropic takes it (at most 64 characters of [a-zA-Z0-9_-]): our row keys (sha256
    hex) fit as they are; others (a pack's `pack:...`) become a sha256-derived id. Pure, so a later run
    derives the same id from the custom_id recorded in llm_batch_job_keys."""
    if _CUSTOM_ID.match(custom_id):
        return custom_id
    return "h-" + hashlib.sha256(custom_id.encode()).hexdigest()[:62]


def parse_result_line(line: Mapping[str, Any]) -> ResultLine:
    """One line of a batch's results: `succeeded` with its Message, else why it has none (`errored`
    with the API's error, `expired` or `canceled`: those are sent again, realtime or in a follow-up batch)."""
    custom_id = str(line.get("custom_id"))
    raw = line.get("result")
    result: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = result.get("type")
    if kind == "succeeded":
        try:
            return ResultLine(custom_id, completion=completion_of(result.get("message")))
        except (KeyError, IndexError, TypeError, AttributeError):
            said = json.dumps(result)[:200]
            return ResultLine(custom_id, error_kind="bad_response", error=f"not a Message: {said}")
    if kind == "errored":
        outer = result.get("error")
        error: dict[str, Any] = outer if isinstance(outer, dict) else {}
        nested = error.get("error")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else error
        type_ = str(inner.get("type") or "api_error")
        said = f"{type_}: {inner.get('message') or 'no message'}"
        return ResultLine(custom_id, error_kind=_ERROR_KINDS.get(type_, "server_error"), error=said)
    if kind == "expired":
        return ResultLine(custom_id, error_kind="batch_expired", error="the batch expired before this request ran")
    if kind == "canceled":
        return ResultLine(custom_id, error_kind="batch_cancelled", error="the batch was canceled before it ran")
    return ResultLine(custom_id, error_kind="bad_response", error=f"a result of unknown type {kind!r}")


def _seconds(value: Any) -> int | None:
    """An RFC 3339 time as Unix seconds; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def batch_status(data: Mapping[str, Any], input_file_id: str | None = None) -> BatchStatus:
    """A message_batch object in the runner's terms: `ended` is terminal, `results_url` is its output."""
    counts = data.get("request_counts") or {}
    kinds = ("processing", "succeeded", "errored", "canceled", "expired")
    number = {name: int(counts.get(name) or 0) for name in kinds}
    status = {"canceling": "cancelling"}.get(str(data["processing_status"]), str(data["processing_status"]))
    return BatchStatus(
        id=str(data["id"]),
        status=status,
        input_file_id=input_file_id,
        output_file_id=data.get("results_url") if status == "ended" else None,
        request_counts=RequestCounts(
            sum(number.values()), number["succeeded"], number["errored"] + number["canceled"] + number["expired"]
        ),
        created_at=_seconds(data.get("created_at")),
        completed_at=_seconds(data.get("ended_at")),
        cancelled_at=_seconds(data.get("cancel_initiated_at")),
    )


class AnthropicBatchClient:
    """Message Batches of one Anthropic API root. `upload` keeps a batch's requests in memory (the API
    takes them inline at create), under an id derived from their bytes. The key is read per call and
    never appears in an error message."""

    max_lines = 100_000  # the API's limits per batch
    max_bytes = 250_000_000  # of 256 MB, room for the envelope of the create body

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Callable[[], str],
        api_key_env: str,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        headers: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self._api_key_env = api_key_env
        self._headers = headers  # the profile's `headers:`, read per call like the key
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), transport=transport)
        self._lock = threading.Lock()
        self._inputs: dict[str, list[dict[str, Any]]] = {}  # input id -> its requests, until its batch exists
        self._attempts: dict[str, tuple[float, int]] = {}  # input id -> (first create sent at, requests), unanswered
        self._claimed: dict[str, str] = {}  # batch id -> the input id it was created from

    def request_line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request of a batch: `params` is what AnthropicProvider posts for the same chat body."""
        params = messages_body(
            body["model"], body["messages"], body.get("response_format"), body["max_tokens"], body["temperature"]
        )
        return {"custom_id": wire_id(custom_id), "params": params}

    def wire_id(self, custom_id: str) -> str:
        return wire_id(custom_id)

    def parse_result_line(self, line: Mapping[str, Any]) -> ResultLine:
        return parse_result_line(line)

    def upload(self, jsonl: bytes, filename: str) -> str:
        requests = split_jsonl(jsonl)
        input_id = "requests-" + hashlib.sha256(jsonl).hexdigest()[:24]
        with self._lock:
            self._inputs[input_id] = requests
        return input_id

    def create(
        self, input_file_id: str, *, completion_window: str = "24h", metadata: Mapping[str, str] | None = None
    ) -> BatchStatus:
        """POST the requests; the window is Anthropic's own (24 h), and a batch takes no metadata."""
        with self._lock:
            requests = self._inputs[input_file_id]
            self._attempts.setdefault(input_file_id, (time.time(), len(requests)))
        data = self._json(self._call("POST", BATCHES_PATH, json={"requests": requests}))
        with self._lock:
            self._attempts.pop(input_file_id, None)
            self._inputs.pop(input_file_id, None)  # the batch holds them now
            self._claimed[str(data.get("id"))] = input_file_id
        return batch_status(data, input_file_id)

    def recent(self, limit: int = 100) -> list[BatchStatus]:
        """The latest batches; one created since a create whose answer was lost, with as many requests,
        is taken as that create's batch (the API keeps no trace of what a batch was created from)."""
        data = self._json(self._call("GET", BATCHES_PATH, params={"limit": min(limit, 1000)}))
        found: list[BatchStatus] = []
        for item in data.get("data") or []:
            status = batch_status(item)
            with self._lock:
                source = self._claimed.get(status.id) or self._lost_create(status)
            found.append(batch_status(item, source))
        return found

    def _lost_create(self, status: BatchStatus) -> str | None:
        for input_id, (sent_at, count) in self._attempts.items():
            recent = status.created_at is not None and status.created_at >= sent_at - _CLOCK_SLACK
            if recent and status.request_counts.total == count and status.id not in self._claimed:
                del self._attempts[input_id]
                self._inputs.pop(input_id, None)
                self._claimed[status.id] = input_id
                return input_id
        return None

    def get(self, batch_id: str) -> BatchStatus:
        data = self._json(self._call("GET", f"{BATCHES_PATH}/{batch_id}"))
        with self._lock:
            source = self._claimed.get(batch_id)
        return batch_status(data, source)

    def cancel(self, batch_id: str) -> BatchStatus:
        return batch_status(self._json(self._call("POST", f"{BATCHES_PATH}/{batch_id}/cancel")))

    def content(self, file_id: str) -> bytes:
        """The results of an ended batch, from its `results_url`; the key goes to base_url's host only."""
        base = httpx.URL(self._base)
        url = httpx.URL(file_id)
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            raise FatalProviderError(
                f"the batch's results_url {shown_url(file_id)} is not on base_url {shown_url(self._base)}: the API "
                "key is not sent there. Check `base_url`."
            )
        return self._call("GET", str(url)).content

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> AnthropicBatchClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith(("http://", "https://")) else self._base + path
        key = self._api_key()  # read per call: a rotated key is picked up
        extra = self._headers()
        secrets = [key, *extra.values()]
        what = f"{method} {shown_url(url)}"
        try:
            response = self._client.request(method, url, headers=request_headers(key, extra), **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientError("timeout", f"{what} timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            message = redact(f"{what}: connection failed ({type(exc).__name__}: {exc})", secrets)
            raise TransientError("connection", message) from None
        try:
            raise_for_status(response, secrets, self._api_key_env, what)
        except TransientError as exc:
            raise TransientError(exc.kind, f"{what}: {exc}", exc.retry_after, exc.rate) from None
        except RowError as exc:  # the API refused this call for a reason retrying does not fix
            raise BatchApiError(response.status_code, f"{what}: {exc}") from None
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise TransientError("bad_response", f"HTTP {response.status_code} from {response.request.url}: not JSON")
        return data
