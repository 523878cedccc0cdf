"""Fixtures for the cross-process tests: private bus directories, the Go binary, the C
consumer, and processes that are always ended by their pid."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HELPERS = HERE / "helpers"

try:
    import framebus  # noqa: F401  (installed: the venv of make test-python)
    SRC_ENV: Dict[str, str] = {}
except ImportError:  # running from the checkout without installing
    sys.path.insert(0, str(REPO / "python" / "src"))
    SRC_ENV = {"PYTHONPATH": str(REPO / "python" / "src")}

PY = sys.executable


def child_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.pop("FRAMEBUS_DIR", None)
    env.update(SRC_ENV)
    env.update(extra)
    return env


class Proc:
    """A child process whose stdout lines are read by a thread (so a test can wait for
    a line with a timeout) and whose stderr is kept for failure messages."""

    def __init__(self, args: List[str], **kw) -> None:
        self.args = [str(a) for a in args]
        self.p = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=kw.pop("env", child_env()), **kw)
        self.pid = self.p.pid
        self.q: "queue.Queue[Optional[str]]" = queue.Queue()
        self.lines: List[str] = []
        self.err: List[str] = []
        self.threads = [threading.Thread(target=self._pump, args=(self.p.stdout, True), daemon=True),
                        threading.Thread(target=self._pump, args=(self.p.stderr, False), daemon=True)]
        for t in self.threads:
            t.start()

    def _pump(self, f, is_out: bool) -> None:
        for line in f:
            if is_out:
                self.lines.append(line.rstrip("\n"))
                self.q.put(line.rstrip("\n"))
            else:
                self.err.append(line)
        if is_out:
            self.q.put(None)

    def next_line(self, timeout: float = 30.0) -> Optional[str]:
        """The next stdout line, None at end of output; fails the test after timeout."""
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from {self.args[:3]} within {timeout} s\nstderr:\n{self.stderr}")

    def events(self, timeout: float = 30.0) -> Iterator[dict]:
        """stdout lines as JSON objects (other lines are skipped)."""
        while True:
            line = self.next_line(timeout)
            if line is None:
                return
            if line.startswith("{"):
                yield json.loads(line)

    def wait_event(self, pred, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        for ev in self.events(timeout):
            if pred(ev):
                return ev
            if time.monotonic() > end:
                break
        raise AssertionError(f"event not seen within {timeout} s; stderr:\n{self.stderr}\nlast lines: {self.lines[-5:]}")

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, once the process has ended and its output is all read."""
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.args[:3]} did not end within {timeout} s\nstderr:\n{self.stderr}")
        for t in self.threads:
            t.join(10)
        return rc

    def drain(self, timeout: float = 60.0) -> List[dict]:
        """Every remaining JSON event, until the process's stdout closes."""
        return list(self.events(timeout))

    def signal(self, sig: int) -> None:
        if self.p.poll() is None:
            os.kill(self.pid, sig)

    def end(self) -> None:
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass

    @property
    def stderr(self) -> str:
        return "".join(self.err)[-4000:]


@pytest.fixture
def procs():
    """Starts processes; every one still running at the end is killed by its pid."""
    started: List[Proc] = []

    def start(args: List[str], **kw) -> Proc:
        p = Proc(args, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.end()


@pytest.fixture
def busdir():
    """A private bus directory on /dev/shm, never the default names."""
    d = tempfile.mkdtemp(prefix="fbpy-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def go_bin(tmp_path_factory) -> str:
    """The Go command: $FRAMEBUS_BIN, else bin/framebus of the checkout, else built here."""
    b = os.environ.get("FRAMEBUS_BIN") or str(REPO / "bin" / "framebus")
    if os.access(b, os.X_OK):
        return b
    go = shutil.which("go")
    if go is None:
        pytest.fail("no framebus binary (make test-python builds bin/framebus) and no go to build one")
    out = str(tmp_path_factory.mktemp("gobin") / "framebus")
    subprocess.run([go, "build", "-o", out, "./cmd/framebus"], cwd=REPO, check=True,
                   env=dict(os.environ, CGO_ENABLED="0"))
    return out


@pytest.fixture(scope="session")
def c_consumer(tmp_path_factory) -> str:
    """framebus/testdata/c/consumer.c over libframebus, built with gcc as framebus/cconsumer_test.go does."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found")
    out = str(tmp_path_factory.mktemp("cbin") / "consumer")
    lib = REPO / "libframebus"
    subprocess.run([gcc, "-O2", "-std=gnu11", "-Wall", "-Werror", "-pthread",
                    "-I", str(REPO / "framebus" / "include"), "-I", str(lib / "include"),
                    "-o", out, *sorted(str(p) for p in (lib / "src").glob("*.c")),
                    str(REPO / "framebus" / "testdata" / "c" / "consumer.c")], check=True)
    return out


def consume_args(name: str, d: str, *extra: str) -> List[str]:
    return [PY, "-X", "faulthandler", str(HELPERS / "consume.py"), name, d, *extra]


def wait_for(pred, timeout: float = 10.0, what: str = "condition", interval: float = 0.01):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


def go_stat(go_bin: str, name: str, d: str) -> dict:
    r = subprocess.run([go_bin, "stat", name, "--dir", d, "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def check_accounting(frames: List[dict], joined_last_seq: int) -> None:
    """Section 5 step 4: strictly increasing sequence numbers, and delivered + dropped
    accounts for every frame committed after the join."""
    last = joined_last_seq
    for ev in frames:
        assert ev["seq"] > last, f"seq {ev['seq']} after {last}"
        assert ev["dropped"] == ev["seq"] - last - 1, f"seq {ev['seq']} after {last} with dropped={ev['dropped']}"
        last = ev["seq"]
    assert len(frames) + sum(ev["dropped"] for ev in frames) == last - joined_last_seq
