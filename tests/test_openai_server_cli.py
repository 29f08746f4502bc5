"""The fake server's command line: its options, random faults and stats lines, in a real subprocess."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

SERVER = str(Path(__file__).parent / "openai_server.py")
OPTIONS = ("--fault-rate KIND=RATE", "--seed", "--hang-seconds", "--stats-every SECONDS", "--port", "--latency")


def test_help_lists_the_fault_and_stats_options() -> None:
    out = subprocess.run([sys.executable, SERVER, "--help"], capture_output=True, text=True, check=True).stdout
    for option in OPTIONS:
        assert option in out
    assert "429, 500, 503, 502_html, timeout, invalid, truncated" in " ".join(out.split())


def test_a_bad_fault_rate_is_refused() -> None:
    for bad, why in (
        (["418=0.1"], "unknown fault kind '418'"),
        (["500=2"], "the rate must be between 0 and 1"),
        (["500=0.7", "--fault-rate", "429=0.7"], "the --fault-rate rates sum to more than 1"),
    ):
        result = subprocess.run([sys.executable, SERVER, "--fault-rate", *bad], capture_output=True, text=True)
        assert result.returncode == 2 and why in result.stderr, result.stderr


def _status(url: str) -> str:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(response.status)
    except urllib.error.HTTPError as exc:
        return str(exc.code)
    except (ConnectionError, urllib.error.URLError):
        return "dropped"  # the `timeout` fault closes the connection without an answer


def test_random_faults_happen_and_the_stats_lines_count_them() -> None:
    faults = ["--fault-rate", "500=0.3", "--fault-rate", "timeout=0.1", "--hang-seconds", "0.05", "--seed", "3"]
    server = subprocess.Popen(
        [sys.executable, SERVER, *faults, "--stats-every", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert server.stdout.readline().startswith("stats: 0 requests;")  # the periodic line
        seen = Counter(_status(base_url + "/chat/completions") for _ in range(40))
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    assert seen["500"] > 0 and seen["dropped"] > 0 and seen["200"] > 0
    last = out.strip().splitlines()[-1]  # printed on exit
    status = f"status 200={seen['200']} 500={seen['500']} dropped={seen['dropped']}"
    assert last == f"stats: 40 requests; {status}; faults 500={seen['500']} timeout={seen['dropped']}"
