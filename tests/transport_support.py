"""Running the agent as a daemon against a broker, for the transport tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from defender_iot.build import AgentBuild, run_prefix
from defender_iot.features import load_features

# Every priority every 3 s ("0.05" minutes) so tests see several messages.
FAST = "0.05,0.05,0.05"


def transport_options() -> Dict[str, bool]:
    """A build with every transport, the heartbeat collector and nothing
    else: the tests then know exactly what the agent produces."""
    opts = {}
    for f in load_features():
        if f.kind == "transport":
            opts[f.option] = True
        else:
            opts[f.option] = f.kind == "collector" and f.name == "heartbeat"
    return opts


def write_secret(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


@dataclass
class AgentProcess:
    """The agent in its event loop with a config file; stderr goes to a log."""

    build: AgentBuild
    workdir: Path
    config: Dict[str, Any]
    proc: Optional[subprocess.Popen] = field(default=None, init=False)
    runs: int = field(default=0, init=False)

    @property
    def log(self) -> Path:
        return self.workdir / "agent.log"

    def start(self) -> "AgentProcess":
        cfg = write_secret(self.workdir / "agent.json", json.dumps(self.config))
        self.runs += 1
        with open(self.log, "a") as log:
            log.write(f"--- run {self.runs}\n")
            log.flush()
            self.proc = subprocess.Popen(run_prefix(self.build.arch) + [str(self.build.binary), "--config", str(cfg)],
                                         stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        return self

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, needle: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if needle in text:
                return text
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"'{needle}' not in the agent's log:\n{self.log_text()[-3000:]}")

    def __enter__(self) -> "AgentProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def wait_until(done: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def events_of(bodies: List[dict], name: Optional[str] = None) -> List[dict]:
    return [e for b in bodies for e in b.get("Events", []) if name is None or e["Name"] == name]
