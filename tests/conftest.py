"""Shared fixtures: building the agent with a chosen feature set, and
running it against snapshot trees."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from defender_iot.build import AgentBuild, build_agent, run_prefix

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def agent_factory() -> Callable[..., AgentBuild]:
    """build(options={"AGENT_COLLECTOR_LOGIN": False}, arch="x86_64") -> AgentBuild.
    Builds are cached per option set for the session (and on disk)."""
    cache: Dict[str, AgentBuild] = {}

    def build(options=None, arch="x86_64", **kw) -> AgentBuild:
        key = repr((sorted((options or {}).items()), arch, sorted(kw.items())))
        if key not in cache:
            cache[key] = build_agent(options, arch=arch, **kw)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def agent(agent_factory) -> AgentBuild:
    """The default build: every feature at its default."""
    return agent_factory()


def run_agent(build: AgentBuild, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = run_prefix(build.arch) + [str(build.binary), *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def messages(stdout: str) -> List[dict]:
    """Every JSON line the agent printed, parsed (each must be valid JSON)."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def events(stdout: str, name: str | None = None) -> List[dict]:
    return [e for m in messages(stdout) for e in m["Events"] if name is None or e["Name"] == name]
