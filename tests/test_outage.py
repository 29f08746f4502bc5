"""Provider outages: rows wait behind one probe instead of burning their retries, a poison row still
fails, row_timeout still bounds a permanent outage; and a real dbt run rides out a stopped server."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field

import httpx
from conftest import DbtProject

from dbt_llm.engine import Budget, Engine, EngineSettings, Outcome, Request
from dbt_llm.engine.outage import Outage
from dbt_llm.functions.tasks import build_task, cache_key
from dbt_llm.pricing import PriceTable
from dbt_llm.providers import OpenAIProvider

TASK = build_task(
    {"function": "classify", "labels": ["billing", "bug"]}, provider="openai", default_model="m", temperature=0.0
)
ROWS = 40


@dataclass
class Sent:
    text: str
    arrived: float
    done: float = 0.0
    status: int = 0  # 0: the connection was refused


@dataclass
class Flaky:
    """The provider's side of httpx.MockTransport: the first `failures` requests are refused (or get
    `status`), and so is every request for a text containing `poison`; the rest are answered."""

    failures: int = 0
    status: int | None = None  # None: refuse the connection
    headers: dict[str, str] = field(default_factory=dict)
    poison: str | None = None
    sent: list[Sent] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["messages"][-1]["content"]
        record = Sent(text, time.monotonic())
        self.sent.append(record)
        await asyncio.sleep(0.002)  # on the wire: the requests of a wave overlap
        record.done = time.monotonic()
        failing = self.failures > 0 or (self.poison is not None and self.poison in text)
        if failing and self.poison is None:
            self.failures -= 1
        if failing and self.status is None:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if failing:
            record.status = self.status or 500
            return httpx.Response(record.status, headers=self.headers, json={"error": {"message": "unavailable"}})
        record.status = 200
        answer = {"label": "bug"}
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": json.dumps(answer)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3},
            },
        )


def run(flaky: Flaky, *, max_attempts: int, row_timeout: float = 60.0) -> tuple[list[Outcome], Engine]:
    """ROWS distinct texts through the engine, with the outage gate's delays short and fixed."""
    engine = Engine(
        lambda: OpenAIProvider(
            base_url="http://provider.test/v1",
            api_key=lambda: "k",
            timeout=5.0,
            max_connections=8,
            transport=httpx.MockTransport(flaky),
        ),
        prices=PriceTable(free=True),
        settings=EngineSettings(max_concurrency=8, max_attempts=max_attempts, row_timeout=row_timeout),
        outage=Outage(first_delay=0.01, max_delay=0.04, jitter=lambda: 1.0),
    )
    budget = Budget(None)
    texts = [f"ticket {i}" for i in range(ROWS)]
    requests = [Request(cache_key(TASK.spec_hash, t), TASK, t, budget) for t in texts]
    try:
        return engine.run(requests, lambda _outcome: None), engine
    finally:
        engine.close()


def probes(sent: list[Sent]) -> list[Sent]:
    """Requests sent after the first failure came back: the provider looked down from then on."""
    first_failure = min(s.done for s in sent if s.status != 200)
    return [s for s in sent if s.arrived > first_failure]


def test_refused_connections_wait_behind_one_probe_and_do_not_count_against_max_attempts() -> None:
    flaky = Flaky(failures=14)
    outcomes, engine = run(flaky, max_attempts=1)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert max(o.attempts for o in outcomes) >= 2  # a failure in the outage did not use up the one attempt
    assert sum(o.attempts for o in outcomes) == len(flaky.sent) == ROWS + 14  # every request sent is counted
    assert engine.outage.outages == 1
    # Once down, one request at a time until one is answered, at doubling intervals up to the cap.
    down = [s for s in probes(flaky.sent) if s.status == 0]
    assert len(down) >= 5
    for before, after in itertools.pairwise(down):
        assert after.arrived >= before.done
    gaps = [after.arrived - before.done for before, after in itertools.pairwise(down)]
    for gap, delay in zip(gaps, [0.02, 0.04, 0.04, 0.04], strict=False):
        assert gap >= delay * 0.99


def test_5xx_of_many_rows_is_an_outage_and_retry_after_spaces_the_probes() -> None:
    flaky = Flaky(failures=14, status=503, headers={"retry-after-ms": "150"})
    outcomes, engine = run(flaky, max_attempts=2)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert max(o.attempts for o in outcomes) > 2
    assert sum(o.attempts for o in outcomes) == len(flaky.sent) == ROWS + 14
    assert engine.outage.outages == 1
    # At most 8 in flight and 2 more rows before the third made it an outage: from the 11th on, probes.
    down = [s for s in flaky.sent if s.status == 503][10:]
    assert all(after.arrived - before.done >= 0.149 for before, after in itertools.pairwise(down))


def test_a_poison_row_still_fails_after_max_attempts_while_others_are_answered() -> None:
    flaky = Flaky(status=500, poison="ticket 7")
    outcomes, engine = run(flaky, max_attempts=3)
    failed = [o for o in outcomes if not o.ok]
    assert len(failed) == 1 and failed[0].key == cache_key(TASK.spec_hash, "ticket 7")
    assert (failed[0].error_kind, failed[0].attempts) == ("retries_exhausted", 3)
    assert engine.outage.outages == 0


def test_row_timeout_bounds_a_permanent_outage_and_rows_never_sent_wait_too() -> None:
    flaky = Flaky(failures=10**9)
    outcomes, _ = run(flaky, max_attempts=5, row_timeout=0.3)
    assert {o.error_kind for o in outcomes} == {"row_timeout"}
    assert all("row_timeout=0.3s" in (o.error or "") and "Connection refused" in (o.error or "") for o in outcomes)
    # A probe at a time: far fewer requests than rows, and many rows were never sent at all.
    assert len(flaky.sent) < ROWS
    assert sum(o.attempts == 0 for o in outcomes) > ROWS // 2


def test_a_dbt_run_rides_out_a_stopped_server_and_pays_each_answer_once(project: DbtProject) -> None:
    n = 180
    project.plugin_config.update(max_concurrency=2, max_attempts=2, progress_interval=1.0)
    project.server.latency = 0.02
    project.write(
        "seeds/tickets.csv", "id,body\n" + "".join(f"{i},ticket {i}: my invoice is wrong\n" for i in range(n))
    )
    project.write(
        "models/classified.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'feature']) }} as label "
        "from {{ ref('tickets') }}\n",
    )
    project.dbt("seed")
    server, port = project.server, project.server.port
    stopped_at: list[int] = []  # answers when the server stopped
    finished = threading.Event()

    def take_it_down() -> None:
        while len(server.answered()) < 30:
            if finished.is_set():
                return
            time.sleep(0.01)
        server.stop()
        stopped_at.append(len(server.answered()))
        time.sleep(15)
        server.start(port=port)

    chaos = threading.Thread(target=take_it_down, daemon=True)
    chaos.start()
    try:
        project.dbt("run")
    finally:
        finished.set()
        chaos.join()

    answered = [r.text for r in server.answered()]
    assert stopped_at and stopped_at[0] < n // 2  # stopped early in the run: most rows were answered after the restart
    assert project.query("select count(*), count(label) from classified")[0] == (n, n)
    assert project.query("select count(*) from dbt_llm.llm_errors")[0][0] == 0
    # Every answer paid once. The server bills an answer before it writes it, so the stop may cut one
    # of the two in flight after it was billed: that text is asked again.
    assert len(set(answered)) == n and len(answered) <= n + 2
    api_calls, failed = project.query("select api_calls, failed_rows from dbt_llm.llm_audit")[0]
    assert failed == 0 and api_calls > len(server.requests)  # refused requests were counted too
    log = (project.root / "logs" / "dbt.log").read_text()
    assert "the provider is unreachable" in log  # the progress lines say why nothing moves
