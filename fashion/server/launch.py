"""Start `fashion serve` in a child process and wait until it answers (tests, benchmarks, screenshots).

>>> with running_server("out") as server:          # doctest: +SKIP
...     urllib.request.urlopen(server.url + "/healthz")
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Server:
    """A running `fashion serve` child: its base URL, process and seconds from start to /healthz ok."""

    url: str
    process: subprocess.Popen
    startup_s: float
    health: dict


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def running_server(run_dir, host: str = "127.0.0.1", port: int | None = None, timeout: float = 120.0,
                   extra_args=(), env=None, cwd=None):
    """Run ``python -m fashion serve RUN_DIR`` on ``host``:``port`` (a free one by default) until the
    block ends, then stop it (terminate, then kill). ``cwd``: the folder it starts in (``-m`` imports
    the ``fashion`` found there first: another checkout's, for a benchmark's baseline). Raises
    RuntimeError with its output when it exits or does not answer /healthz within ``timeout`` seconds."""
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    command = [sys.executable, "-m", "fashion", "-q", "serve", os.path.abspath(run_dir), "--host", host,
               "--port", str(port), *extra_args]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, **(env or {})}, cwd=cwd)
    try:
        health = None
        while health is None:
            if process.poll() is not None:
                raise RuntimeError(f"`fashion serve` exited with {process.returncode}: "
                                   f"{process.stdout.read().decode(errors='replace')[-2000:]}")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"`fashion serve` did not answer {url}/healthz within {timeout:.0f} s")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                    health = json.loads(response.read())
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        yield Server(url, process, time.perf_counter() - start, health)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()
