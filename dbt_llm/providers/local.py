"""`provider: local`: every model a macro names is a llama.cpp server of its own on 127.0.0.1, started
on the model's first request and reached through the same OpenAI client as any remote endpoint.
llm_embed's model runs in llama.cpp's embedding mode (a server of its own too).

One server per model (rather than one that swaps models) keeps each model's prompt cache warm: a
cascade asks the small model every row and the large one now and then, interleaved."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from ..local.registry import LocalModelError, embed_prefix, model_dimensions
from ..local.server import EMBED_CTX_PER_SLOT, Slots, register_exit_hook, shared_server
from .base import Completion, Embeddings, FatalProviderError, RowError, TransientError
from .openai import OpenAIProvider


class LocalProvider:
    """Routes each request by its `model` (a registry name or a .gguf path) to that model's server."""

    name = "local"

    def __init__(self, slots: Slots, request_timeout: float) -> None:
        register_exit_hook()  # before the caller's own hook, so connections close before servers stop
        self._slots = slots
        self._timeout = request_timeout
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, bool], OpenAIProvider] = {}

    async def _client(self, model: str, embedding: bool = False) -> OpenAIProvider:
        key = (model, embedding)
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        try:  # loading a model takes seconds: not on the event loop, where other models' rows run
            server = await asyncio.to_thread(shared_server, model, self._slots, embedding=embedding)
        except LocalModelError as exc:
            raise FatalProviderError(f"provider local, model {model!r}: {exc}") from None
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = OpenAIProvider(
                    base_url=server.base_url,
                    api_key=lambda: server.api_key,
                    timeout=self._timeout,
                    max_connections=self._slots.n_parallel,
                    trust_env=False,
                )
                self._clients[key] = client
        return client

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        response_format: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
        top_logprobs: int | None = None,
    ) -> Completion:
        client = await self._client(model)
        return await client.complete(
            model=model,
            messages=messages,
            response_format=response_format,
            max_tokens=max_tokens,
            temperature=temperature,
            top_logprobs=top_logprobs,
        )

    async def embed(self, *, model: str, inputs: list[str], dimensions: int | None) -> Embeddings:
        """Every input gets the model's task prefix, so equal texts send equal inputs. The prefix is
        fixed per registry model: the model name in the cache key stands for it."""
        own = model_dimensions(model)
        if dimensions is not None and own is not None and dimensions != own:  # llama.cpp gives its own length
            raise FatalProviderError(
                f"provider local, model {model!r} gives vectors of {own} dimensions, not {dimensions}: "
                f"pass dimensions={own} (a FLOAT[{own}] column) or none (FLOAT[])"
            )
        client = await self._client(model, embedding=True)
        prefix = embed_prefix(model)
        try:
            return await client.embed(model=model, inputs=[prefix + text for text in inputs], dimensions=None)
        except TransientError as exc:  # llama.cpp answers 500 to a text longer than its batch: no retry mends it
            if "too large to process" not in str(exc):
                raise
            raise RowError(
                "input_too_long",
                f"provider local, model {model!r}: the text is longer than the {EMBED_CTX_PER_SLOT:,} tokens the "
                "model reads at once; embed a shorter part of it (for example left(text, 6000))",
            ) from None

    async def aclose(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
