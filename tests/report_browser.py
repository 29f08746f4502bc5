"""Headless Chromium for the report tests: the DOM of a page after its scripts ran, and a screenshot.
Chromium is Debian's `chromium` package (`.ci/run` installs it); without it the tests skip, but fail in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # gitignored; kept after the run
VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"}


def chromium() -> str:
    found = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
    if found is None:
        message = "headless Chromium is needed to render the report: apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(*args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def render(page: Path, fragment: str = "") -> Dom:
    """The page's DOM once Chromium loaded it and ran its scripts (no network: a file:// address)."""
    return Dom.parse(_run("--dump-dom", page.resolve().as_uri() + (f"#{fragment}" if fragment else "")))


def screenshot(page: Path, png: Path, height: int = 3600) -> Path:
    png.parent.mkdir(parents=True, exist_ok=True)
    _run("--hide-scrollbars", f"--window-size=1000,{height}", f"--screenshot={png}", page.resolve().as_uri())
    assert png.stat().st_size > 10_000, "a blank screenshot"
    return png


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""  # all the text inside it
    hidden: bool = False  # it or an ancestor has the hidden attribute
    children: list[Element] = field(default_factory=list)

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        found = [e for e in self.walk() if (tag is None or e.tag == tag) and _has(e, attrs)]
        return found

    def walk(self) -> list[Element]:
        out = [self]
        for child in self.children:
            out += child.walk()
        return out


def _has(element: Element, attrs: dict[str, str]) -> bool:
    return all(element.attrs.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())


class Dom(HTMLParser):
    """The dumped DOM as a tree of elements (Chromium's serialisation is well formed)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self._stack = [self.root]

    @classmethod
    def parse(cls, html: str) -> Dom:
        dom = cls()
        dom.feed(html)
        dom.close()
        return dom

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        parent = self._stack[-1]
        element = Element(tag, {k: v or "" for k, v in attrs})
        element.hidden = parent.hidden or "hidden" in element.attrs
        parent.children.append(element)
        if tag not in VOID:
            self._stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, 0, -1):
            if self._stack[i].tag == tag:
                del self._stack[i:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._stack:
            element.text += data

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        return self.root.find(tag, **attrs)
