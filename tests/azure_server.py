"""A local fake of Azure OpenAI's data plane: ``FakeOpenAI``'s answers, faults and batches behind Azure's
routes, key header and rate-limit headers.

Routes (every one needs ``?api-version=`` with a version in ``api_versions``, else a 404 ``Resource not
found``, as Azure answers an unknown version; any other path is that 404 too):

``POST /openai/deployments/{deployment}/chat/completions``, ``POST /openai/deployments/{deployment}/embeddings``
    The deployment names the model: the body's ``model`` (optional on Azure) is replaced by it before
    ``FakeOpenAI`` answers, so records and answers carry the deployment.  A deployment not in
    ``deployments`` (when given) is a 404 ``DeploymentNotFound``.
``/openai/files...``, ``/openai/batches...``
    ``FakeOpenAI``'s Batch API (see openai_server's docstring), except that each line's ``url`` and each
    batch's ``endpoint`` is ``/chat/completions``; a line whose ``model`` is not a deployment is answered
    with a 404 ``DeploymentNotFound`` line in the error file.

The key is the ``api-key`` header (``Authorization`` is not read): a missing or wrong one is a 401.

Rate limits: with ``requests_per_minute`` / ``tokens_per_minute``, each is a bucket that refills
continuously at that rate per minute and holds ``window_seconds`` of it (60: a minute's quota; Azure
enforces requests over shorter windows, e.g. 10).  A realtime request is admitted on arrival when the
request bucket holds one and the token bucket its cost (``ceil(chars / 4)`` of its messages plus its
``max_tokens``), else it is a 429 with ``retry-after``.  Every realtime answer (200 and 429) carries only
``x-ratelimit-remaining-requests`` and ``x-ratelimit-remaining-tokens``, as Azure sends: no limits, no
resets.  ``rejected`` counts the 429s these limits gave.  ``azure_paths`` records every request's path
with its query string.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from openai_server import FakeOpenAI, _Handler
from ratelimited_server import TokenBucket, token_cost

AZURE_BATCH_ENDPOINT = "/chat/completions"
API_VERSIONS = frozenset({"2024-10-21", "2024-06-01", "2025-01-01-preview"})


def openai_route(path: str) -> tuple[str, str | None] | None:
    """The OpenAI route FakeOpenAI serves for an Azure path, and the deployment it names; None: no such route."""
    parts = [unquote(part) for part in urlsplit(path).path.rstrip("/").split("/")[1:]]
    if len(parts) >= 4 and parts[:2] == ["openai", "deployments"]:
        operation = "/".join(parts[3:])
        if operation in ("chat/completions", "embeddings"):
            return f"/v1/{operation}", parts[2]
        return None
    if len(parts) >= 2 and parts[0] == "openai" and parts[1] in ("files", "batches"):
        return "/v1/" + "/".join(parts[1:]), None
    return None


class _AzureHandler(_Handler):
    server_version = "FakeAzureOpenAI/1.0"

    def setup(self) -> None:
        super().setup()
        self._raw: bytes | None = None
        self._target: tuple[str, str | None] | None = None

    @property
    def azure(self) -> FakeAzureOpenAI:
        owner = self.owner
        assert isinstance(owner, FakeAzureOpenAI)
        return owner

    def route(self) -> str:
        return self._target[0] if self._target else "/not-an-azure-route"

    def authorized(self) -> bool:
        key = self.owner.api_key
        return key is None or self.headers.get("api-key") == key

    def send_unauthorized(self) -> None:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
            "for an active subscription and use a correct regional API endpoint for your resource."
        )
        self.send_body(401, json.dumps({"error": {"code": "401", "message": message}}).encode())

    def read_body(self) -> bytes:
        """Read once per request (admission needs it before FakeOpenAI does); the deployment is the model."""
        if self._raw is None:
            raw = super().read_body()
            deployment = self._target[1] if self._target else None
            body = json.loads(raw or b"null") if deployment else None
            if isinstance(body, dict):
                raw = json.dumps({**body, "model": deployment}).encode()
            self._raw = raw
        return self._raw

    def send_body(self, status: int, body: bytes, **kwargs: Any) -> None:
        if self._target is not None and self._target[1] is not None:
            kwargs["headers"] = {**(kwargs.get("headers") or {}), **self.azure.remaining_headers()}
        super().send_body(status, body, **kwargs)

    def _start(self) -> bool:
        """Route this request; False when it was answered already (a 404 or a 429)."""
        self._raw = None
        with self.azure._lock:
            self.azure.azure_paths.append(self.path)
        self._target = openai_route(self.path)
        version = parse_qs(urlsplit(self.path).query).get("api-version", [""])[0]
        if self._target is None or version not in self.azure.api_versions:
            self._target = None
            self.close_connection = True  # the body, if any, is not read
            self.send_body(404, json.dumps({"error": {"code": "404", "message": "Resource not found"}}).encode())
            return False
        deployment = self._target[1]
        if deployment is not None and not self.azure.knows(deployment):
            self.close_connection = True
            self.send_body(404, deployment_not_found())
            return False
        return True

    def do_GET(self) -> None:
        if self._start():
            super().do_GET()

    def do_DELETE(self) -> None:
        if self._start():
            super().do_DELETE()

    def do_POST(self) -> None:
        if not self._start():
            return
        realtime = self._target is not None and self._target[1] is not None
        if realtime and self.authorized() and not self.azure.admit(load_body(self.read_body())):
            self.seen()
            message = "Requests to the ChatCompletions_Create Operation have exceeded the rate limit."
            body = json.dumps({"error": {"code": "429", "message": message}}).encode()
            self.send_body(429, body, headers={"retry-after": "1"})
            return
        super().do_POST()


def load_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def deployment_not_found() -> bytes:
    message = (
        "The API deployment for this resource does not exist. If you created the deployment within the last "
        "5 minutes, please wait a moment and try again."
    )
    return json.dumps({"error": {"code": "DeploymentNotFound", "message": message}}).encode()


class FakeAzureOpenAI(FakeOpenAI):
    """FakeOpenAI behind Azure OpenAI's routes (see the module docstring)."""

    _handler = _AzureHandler
    _thread_name = "fake-azure-openai"
    batch_endpoint = AZURE_BATCH_ENDPOINT

    def __init__(
        self,
        *,
        deployments: tuple[str, ...] | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        window_seconds: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.deployments = deployments
        self.api_versions = API_VERSIONS
        self.azure_paths: list[str] = []
        self.rejected = 0
        self._rate_lock = threading.Lock()
        self.set_quota(requests_per_minute, tokens_per_minute, window_seconds)

    def set_quota(
        self, requests_per_minute: float | None, tokens_per_minute: float | None, window_seconds: float = 60.0
    ) -> None:
        """New buckets (full) for the limits; None: that one is unlimited and not reported."""
        now = time.monotonic()
        with self._rate_lock:
            self._requests = (
                None if requests_per_minute is None else TokenBucket(requests_per_minute, window_seconds, now)
            )
            self._tokens = None if tokens_per_minute is None else TokenBucket(tokens_per_minute, window_seconds, now)

    @property
    def base_url(self) -> str:
        """The resource endpoint, as `base_url` of provider azure takes it."""
        return f"http://127.0.0.1:{self.port}"

    def knows(self, deployment: str) -> bool:
        return self.deployments is None or deployment in self.deployments

    def admit(self, body: dict[str, Any]) -> bool:
        """Take one request and the body's token cost from the buckets; False (and counted) when either is short."""
        now = time.monotonic()
        cost = token_cost(body)
        with self._rate_lock:
            if (self._requests and not self._requests.has(1, now)) or (
                self._tokens and not self._tokens.has(cost, now)
            ):
                self.rejected += 1
                return False
            if self._requests:
                self._requests.take(1, now)
            if self._tokens:
                self._tokens.take(cost, now)
            return True

    def remaining_headers(self) -> dict[str, str]:
        """What is left, as of now: Azure sends no limit and no reset."""
        now = time.monotonic()
        headers: dict[str, str] = {}
        with self._rate_lock:
            if self._requests:
                headers["x-ratelimit-remaining-requests"] = str(self._requests.remaining(now))
            if self._tokens:
                headers["x-ratelimit-remaining-tokens"] = str(self._tokens.remaining(now))
        return headers

    def _answer_batch_line(self, batch_id: str, custom_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not self.knows(str(body.get("model"))):
            return 404, json.loads(deployment_not_found())
        return super()._answer_batch_line(batch_id, custom_id, body)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.azure_paths.clear()
            self.rejected = 0


__all__ = ["API_VERSIONS", "AZURE_BATCH_ENDPOINT", "FakeAzureOpenAI", "openai_route"]
