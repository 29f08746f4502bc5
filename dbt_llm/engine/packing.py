"""Rows packed per request: up to `rows_per_request` texts of one task sent in one request, so the
fixed part of the prompt (labels, instructions, examples) is paid once per request, not per row.

Each text gets a short id; the answer schema is an object with one required property per id, each
the row's own answer schema, so strict structured outputs give exactly one answer per row. Each
row's answer is then validated on its own and cached under the row's own key: packed and unpacked
runs share the cache. What to do when a pack fails is pack_retries.py's job.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, TypeVar

from ..functions import tokens
from ..functions.prompts import Message
from ..functions.tasks import InvalidAnswer, sha256_hex
from ..providers.base import Completion, Provider, TokenLogprob, Usage
from .budget import Budget
from .outcome import Answer, Request, chat

T = TypeVar("T")

MAX_ROWS_PER_REQUEST = 64
EMBED_ROWS_PER_REQUEST = 128  # llm_embed: inputs per /embeddings request (OpenAI takes up to 2,048)
EMBED_CHARS_FACTOR = 16  # ... and up to 16 x max_input_chars of text (OpenAI: 300k tokens a request)
ANSWER_OVERHEAD = 16  # completion tokens of the object around the rows' answers


def row_ids(n: int) -> list[str]:
    return [f"r{i + 1}" for i in range(n)]


@dataclass(frozen=True)
class Pack:
    """Several rows of one task in one request; answers the questions attempt.py asks of a Request."""

    requests: tuple[Request, ...]

    @cached_property
    def ids(self) -> list[str]:
        return row_ids(len(self.requests))

    @property
    def key(self) -> str:
        return "pack:" + sha256_hex("\n".join(r.key for r in self.requests))[:24]

    @property
    def budget(self) -> Budget:
        return self.requests[0].budget

    @property
    def model(self) -> str:
        return self.requests[0].task.model

    @property
    def temperature(self) -> float:
        return self.requests[0].task.temperature

    @property
    def top_logprobs(self) -> int | None:
        return self.requests[0].task.top_logprobs

    @property
    def calibration_key(self) -> str:
        return self.requests[0].task.spec_hash + "/packed"

    @property
    def max_tokens(self) -> int:
        if self.requests[0].task.embeds:
            return 0
        return ANSWER_OVERHEAD + sum(r.task.max_tokens + 4 for r in self.requests)

    @property
    def answer_tokens(self) -> int:
        return tokens.answer_tokens(self.schema)

    def estimate_tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens of the request, as Task.estimate_tokens for one row."""
        if self.requests[0].task.embeds:
            return sum(r.estimate()[0] for r in self.requests), 0
        return tokens.prompt_tokens(self.messages()), self.answer_tokens

    def estimate(self) -> tuple[int, int]:
        return self.estimate_tokens()

    async def send(self, provider: Provider, max_tokens: int) -> Completion:
        """One request for every row: a packed chat completion, or for llm_embed one call with every
        text as an input; either way the content maps each row id to its answer."""
        task = self.requests[0].task
        if task.embeds:
            inputs = [r.text for r in self.requests]
            result = await provider.embed(model=task.model, inputs=inputs, dimensions=task.dimensions)
            content = json.dumps(dict(zip(self.ids, result.vectors, strict=True)))
            return Completion(content, "stop", result.usage, result.rate)
        return await chat(provider, self, max_tokens)

    def messages(self) -> list[Message]:
        return self.requests[0].task.packed_messages({i: r.text for i, r in zip(self.ids, self.requests, strict=True)})

    @cached_property
    def schema(self) -> dict[str, Any]:
        row = self.requests[0].task.wire_schema
        return {
            "type": "object",
            "properties": {row_id: row for row_id in self.ids},
            "required": list(self.ids),
            "additionalProperties": False,
        }

    keeps_cut_answers = False  # a cut pack is split

    def response_format(self) -> dict[str, Any]:
        name = f"llm_{self.requests[0].task.function}_packed"
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": self.schema}}

    def parse_answer(self, content: str | None, logprobs: tuple[TokenLogprob, ...] | None = None) -> Answer:
        """Checks only the envelope (a JSON object): each row's answer is checked by `answers`."""
        envelope(content)
        return Answer(content or "", logprobs=logprobs)

    def answers(self, answer: Answer) -> list[Answer | InvalidAnswer]:
        """Per row, in order: its checked answer, or why it has none."""
        return row_answers(envelope(answer.result), zip(self.ids, self.requests, strict=True), answer)


def envelope(content: str | None) -> dict[str, Any]:
    """A packed answer (realtime or a batch line): the object of row ids around the rows' answers."""
    if content is None or not content.strip():
        raise InvalidAnswer("the answer was empty")
    try:
        value = json.loads(content)
    except ValueError:
        raise InvalidAnswer(f"the packed answer is not JSON: {content[:200]!r}") from None
    if not isinstance(value, dict):
        raise InvalidAnswer(f"the packed answer is not an object of row ids: {content[:200]!r}")
    return value


def row_answers(
    value: dict[str, Any], rows: Iterable[tuple[str, Request]], envelope: Answer
) -> list[Answer | InvalidAnswer]:
    """Per (row id, request), in order: the row's answer checked as an unpacked one is (validated, and
    grounded against the row's own text), or why it has none; its confidence read from its own value's
    tokens in the pack's answer (`envelope`)."""
    results: list[Answer | InvalidAnswer] = []
    for row_id, request in rows:
        if row_id not in value:
            results.append(InvalidAnswer(f"the packed answer has no entry for row {row_id}"))
            continue
        try:
            answer = request.parse_answer(json.dumps(value[row_id], ensure_ascii=False))
        except InvalidAnswer as exc:
            results.append(exc)
            continue
        confidence = request.task.confidence(envelope.result, answer.result, envelope.logprobs, row_id)
        results.append(replace(answer, confidence=confidence))
    return results


Signature = tuple[str, int, int]


def signature(request: Request) -> Signature:
    """Rows that may share a pack: one task (so one function and model), one budget, one pack size."""
    return request.task.spec_hash, id(request.budget), request.rows_per_request


def packs_of(items: Iterable[T], request_of: Callable[[T], Request], max_chars: int) -> list[list[T]]:
    """The items grouped into packs, in order: rows of one signature, at most `rows_per_request` each,
    their texts at most `max_chars` together (a longer text makes a pack of its own)."""
    open_packs: dict[Signature, list[T]] = {}
    sizes: dict[Signature, int] = {}
    packs: list[list[T]] = []
    for item in items:
        request = request_of(item)
        sig = signature(request)
        current = open_packs.get(sig)
        if current is None or not fits(len(current), sizes[sig], request, max_chars):
            current = open_packs[sig] = []
            sizes[sig] = 0
            packs.append(current)
        current.append(item)
        sizes[sig] += len(request.text)
    return packs


def fits(n: int, chars: int, request: Request, max_chars: int) -> bool:
    """Whether `request` may join a pack of `n` rows holding `chars` characters of text."""
    limit = max_chars * (EMBED_CHARS_FACTOR if request.task.embeds else 1)
    return n < request.rows_per_request and chars + len(request.text) <= limit


def take_pack(first: T, rest: Iterator[T], request_of: Callable[[T], Request], max_chars: int) -> list[T]:
    """`first` and the items of `rest` that follow it into one pack (stops at the first that does not fit)."""
    pack, chars = [first], len(request_of(first).text)
    sig = signature(request_of(first))
    for item in rest:
        request = request_of(item)
        if signature(request) != sig or not fits(len(pack), chars, request, max_chars):
            break
        pack.append(item)
        chars += len(request.text)
    return pack


def estimate_tokens(pack: list[Request]) -> tuple[int, int]:
    """(prompt, completion) tokens of the request that sends these rows: unpacked for one row."""
    return pack[0].task.estimate_tokens(pack[0].text) if len(pack) == 1 else Pack(tuple(pack)).estimate_tokens()


def shares(usage: Usage, n: int) -> list[Usage]:
    """`usage` split over n rows as evenly as whole tokens allow; the shares sum to it exactly."""

    def split(total: int) -> list[int]:
        base, extra = divmod(total, n)
        return [base + (i < extra) for i in range(n)]

    prompt, completion, cached = split(usage.prompt_tokens), split(usage.completion_tokens), split(usage.cached_tokens)
    written = split(usage.cache_write_tokens)
    return [Usage(p, c, k, w) for p, c, k, w in zip(prompt, completion, cached, written, strict=True)]
