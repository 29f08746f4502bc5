"""The embedded llama.cpp server. The tests that load a model use smollm2-135m (98 MB, ~1 s to load) and
are skipped unless xllamacpp is installed and that model was pulled (`dbt-llm pull smollm2-135m`)."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from dbt_llm.local import LocalModelError, default_cache_dir, verify
from dbt_llm.local import server as server_mod
from dbt_llm.local.server import LocalServer, Slots, shared_server, stop_shared_servers

HAVE_XLLAMACPP = importlib.util.find_spec("xllamacpp") is not None
SMOL = "smollm2-135m"
needs_xllamacpp = pytest.mark.skipif(not HAVE_XLLAMACPP, reason="xllamacpp is not installed (extra `local`)")
needs_model = pytest.mark.skipif(
    not (HAVE_XLLAMACPP and verify(SMOL)), reason=f"xllamacpp or the {SMOL} model ({default_cache_dir()}) is missing"
)

LABELS = ["software", "hardware", "services", "other"]
CLASSIFY_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "classify",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": LABELS}},
            "required": ["label"],
            "additionalProperties": False,
        },
    },
}


def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 64)
    return path


def test_params_given_to_llama_cpp(tmp_path: Path) -> None:
    srv = LocalServer(fake_gguf(tmp_path), Slots(ctx_per_slot=2048, n_parallel=3, n_threads=2), api_key="k")
    model = SimpleNamespace(path="")
    cpu, cpu_batch = SimpleNamespace(n_threads=-1), SimpleNamespace(n_threads=-1)
    fake = SimpleNamespace(CommonParams=lambda: SimpleNamespace(model=model, cpuparams=cpu, cpuparams_batch=cpu_batch))
    params: Any = srv._make_params(fake)
    assert params.model.path == str(tmp_path / "model.gguf")
    assert (params.n_ctx, params.n_parallel) == (2048 * 3, 3)  # llama.cpp splits n_ctx between the slots
    assert params.cpuparams.n_threads == params.cpuparams_batch.n_threads == 2
    assert params.hostnames == ["127.0.0.1"] and params.port == 0 and params.api_keys == ["k"]
    assert params.verbosity == -1 and params.offline is True and params.ui is False


def test_bad_arguments_and_missing_dependency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(LocalModelError, match="n_parallel"):
        LocalServer(fake_gguf(tmp_path), Slots(n_parallel=0))
    with pytest.raises(LocalModelError, match="dbt-llm pull"):
        LocalServer(SMOL, cache_dir=tmp_path / "empty")
    srv = LocalServer(fake_gguf(tmp_path))
    assert not srv.running
    with pytest.raises(LocalModelError, match="not running"):
        _ = srv.base_url

    def missing(name: str) -> Any:
        raise ImportError(name)

    monkeypatch.setattr(server_mod.importlib, "import_module", missing)
    with pytest.raises(LocalModelError, match=r"dbt-llm\[local\]"):
        srv.start()
    srv.stop()  # stopping a server that never started is fine


@needs_xllamacpp
def test_unloadable_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="could not load"):
        LocalServer(fake_gguf(tmp_path)).start()


@needs_model
def test_serves_openai_chat_completions_with_json_schema() -> None:
    with LocalServer(SMOL, Slots(ctx_per_slot=1024, n_parallel=2)) as srv:
        base = srv.base_url
        assert base.startswith("http://127.0.0.1:") and base.endswith("/v1")
        assert srv.start() == base  # idempotent
        auth = {"Authorization": f"Bearer {srv.api_key}"}
        assert httpx.get(f"{base}/models", timeout=5).status_code == 401  # the port is not open to anyone
        assert httpx.get(f"{base}/models", headers=auth, timeout=5).status_code == 200
        body = {
            "model": "local",
            "messages": [{"role": "user", "content": "Classify: Annual licence for CRM platform, 120 seats"}],
            "response_format": CLASSIFY_FORMAT,
            "temperature": 0,
            "max_tokens": 64,
        }
        answers: list[dict[str, Any]] = []

        def ask() -> None:
            response = httpx.post(f"{base}/chat/completions", json=body, headers=auth, timeout=120)
            response.raise_for_status()
            answers.append(response.json())

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(answers) == 2
        for answer in answers:
            assert answer["choices"][0]["finish_reason"] == "stop"
            assert json.loads(answer["choices"][0]["message"]["content"])["label"] in LABELS  # constrained
            assert answer["usage"]["prompt_tokens"] > 0 and answer["usage"]["completion_tokens"] > 0
    assert not srv.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/health", timeout=2)


@needs_model
def test_shared_server_is_one_per_model_and_params() -> None:
    try:
        a = shared_server(SMOL, Slots(ctx_per_slot=512, n_parallel=1))
        b = shared_server(SMOL, Slots(ctx_per_slot=512, n_parallel=1))
        assert a is b and a.running
        assert httpx.get(a.base_url.removesuffix("/v1") + "/health", timeout=5).status_code == 200
    finally:
        stop_shared_servers()
    assert not a.running


def test_busy_requests_parser() -> None:
    text = "# HELP x\nllamacpp:requests_processing 1\nllamacpp:requests_deferred 2\nllamacpp:n_tokens_max 7\n"
    assert server_mod._busy_requests(text) == 3
    assert server_mod._busy_requests("llamacpp:requests_processing 0\n") is None


@needs_model
def test_stop_waits_for_the_request_in_flight() -> None:
    # llama.cpp's destructor would deadlock on a connected client: stop() must let the answer finish first.
    srv = LocalServer(SMOL, Slots(ctx_per_slot=512, n_parallel=1, n_threads=1))
    base = srv.start()
    result: dict[str, Any] = {}

    def ask() -> None:
        body = {"messages": [{"role": "user", "content": "Tell a story"}], "max_tokens": 40, "temperature": 0}
        response = httpx.post(
            f"{base}/chat/completions", json=body, headers={"Authorization": f"Bearer {srv.api_key}"}, timeout=60
        )
        result["usage"] = response.json()["usage"]

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the request is being processed
        metrics = httpx.get(f"{base.removesuffix('/v1')}/metrics", headers={"Authorization": f"Bearer {srv.api_key}"})
        if server_mod._busy_requests(metrics.text):
            break
        time.sleep(0.02)
    srv.stop(drain_timeout=60)
    thread.join(timeout=60)
    assert result["usage"]["completion_tokens"] > 0
    assert not srv.running
