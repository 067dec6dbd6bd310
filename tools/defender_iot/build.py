"""Building the agent with CMake: one function the tests, the configurator
and the image builder share."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

from defender_iot.errors import UserError
from defender_iot.features import repo_root

ARCHES = {
    # name: (toolchain file or None, Debian multiarch triplet, QEMU user binary)
    "x86_64": (None, "x86_64-linux-gnu", None),
    "aarch64": ("toolchain-aarch64.cmake", "aarch64-linux-gnu", "qemu-aarch64"),
    "armhf": ("toolchain-armhf.cmake", "arm-linux-gnueabihf", "qemu-arm"),
}


@dataclass(frozen=True)
class AgentBuild:
    build_dir: Path
    arch: str

    @property
    def binary(self) -> Path:
        return self.build_dir / "defender-iot-agent"


def build_agent(
    options: Mapping[str, bool | str] | None = None,
    *,
    arch: str = "x86_64",
    build_dir: Optional[Path] = None,
    cache_file: Optional[Path] = None,
    build_type: str = "MinSizeRel",
    testing: bool = False,
    extra: Optional[Dict[str, str]] = None,
) -> AgentBuild:
    """Configure and build the agent. `options` maps CMake options
    (AGENT_COLLECTOR_PROCESS, ...) to ON/OFF; `cache_file` is an initial
    cache (-C) such as the configurator writes. A build directory named from
    the options is reused, so repeated calls cost an incremental build."""
    if arch not in ARCHES:
        raise UserError(f"unknown architecture '{arch}' (expected one of {', '.join(ARCHES)})")
    if shutil.which("cmake") is None:
        raise UserError("cmake is not installed: run scripts/setup.sh")
    defs: Dict[str, str] = {"CMAKE_BUILD_TYPE": build_type, "BUILD_TESTING": "ON" if testing else "OFF"}
    for k, v in (options or {}).items():
        defs[k] = ("ON" if v else "OFF") if isinstance(v, bool) else str(v)
    defs.update(extra or {})
    toolchain = ARCHES[arch][0]
    root = repo_root()
    if toolchain:
        defs["CMAKE_TOOLCHAIN_FILE"] = str(root / "agent" / "cmake" / toolchain)
    if build_dir is None:
        key = repr(sorted(defs.items())) + (cache_file.read_text() if cache_file else "")
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        build_dir = root / "build" / f"agent-{arch}-{digest}"
    cmd = ["cmake", "-S", str(root / "agent"), "-B", str(build_dir)]
    if shutil.which("ninja"):
        cmd += ["-G", "Ninja"] if not (build_dir / "CMakeCache.txt").exists() else []
    if cache_file:
        cmd += ["-C", str(cache_file)]
    cmd += [f"-D{k}={v}" for k, v in sorted(defs.items())]
    _run(cmd, "configure")
    _run(["cmake", "--build", str(build_dir), "--parallel", str(os.cpu_count() or 2)], "build")
    return AgentBuild(build_dir=build_dir, arch=arch)


def _run(cmd, what: str) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        raise UserError(f"agent {what} failed ({' '.join(cmd[:4])} ...):\n{tail}")


def run_prefix(arch: str) -> list:
    """How to run a binary of `arch` on this machine (qemu-user for cross builds)."""
    qemu = ARCHES[arch][2]
    if qemu is None:
        return []
    return [qemu, "-L", f"/usr/{ARCHES[arch][1]}"]
