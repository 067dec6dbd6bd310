"""Every QEMU invocation in the repository uses `-netdev user,restrict=on`,
so a guest running attack simulations reaches nothing but its explicit
forwards. This scans every tracked file (code, scripts, docs, labgrid env
files) for QEMU network options."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import List, Tuple

from defender_iot.image.builder import Image
from defender_iot.image.qemu import netdev, qemu_command

REPO = Path(__file__).resolve().parents[2]

# A user-mode network given to QEMU: `-netdev user...`, `-nic user...`,
# `-net user...`, labgrid's `nic: user...`.
NETWORK = re.compile(r"""(-netdev|-nic|-net)[\s=]+["']?user\b|^\s*nic:\s*["']?user\b""")
# Python building the argument list: "-netdev", <expr>
PY_NETDEV = re.compile(r"""["'](-netdev|-nic|-net)["']\s*,\s*(.+)""")


def violations(path: str, text: str) -> List[Tuple[str, int, str]]:
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if NETWORK.search(line) and "restrict=on" not in line:
            found.append((path, n, line.strip()))
        m = PY_NETDEV.search(line)
        # The only sanctioned builder is defender_iot.image.qemu.netdev(),
        # which the test below checks.
        if m and "restrict=on" not in line and not m.group(2).lstrip().startswith("netdev("):
            found.append((path, n, line.strip()))
    return found


def tracked_text_files() -> List[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, stdout=subprocess.PIPE, check=True).stdout
    files = []
    for name in out.decode().split("\0"):
        p = REPO / name
        if name and p.is_file() and p.stat().st_size < 2_000_000:
            files.append(p)
    return files


def test_every_qemu_network_in_the_repository_is_restricted():
    bad = []
    for p in tracked_text_files():
        if p == Path(__file__).resolve():
            continue      # its samples of what must be refused
        try:
            text = p.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        bad += violations(str(p.relative_to(REPO)), text)
    assert not bad, "QEMU user networking without restrict=on:\n" + "\n".join(f"{f}:{n}: {l}" for f, n, l in bad)


def test_the_scanner_catches_unrestricted_invocations():
    samples = [
        "qemu-system-x86_64 -netdev user,id=n0 -device virtio-net-pci,netdev=n0",
        "qemu-system-aarch64 -nic user,model=virtio-net-pci",
        "  nic: user,model=virtio-net-pci",
        'cmd = ["qemu", "-netdev", "user,id=n0"]',
    ]
    for s in samples:
        assert violations("sample", s), f"not flagged: {s}"
    ok = ["qemu -netdev user,id=n0,restrict=on", '["-netdev", netdev(fwd, 2222)]', "  nic: user,restrict=on"]
    for s in ok:
        assert not violations("sample", s), f"flagged: {s}"


def test_the_runner_always_restricts(tmp_path):
    assert netdev({}, None).split(",")[:3] == ["user", "id=n0", "restrict=on"]
    arg = netdev({("10.0.2.100", 8883): 1234}, 2222)
    assert "restrict=on" in arg and "guestfwd=tcp:10.0.2.100:8883-cmd:socat - TCP:127.0.0.1:1234" in arg
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in arg
    image = Image(arch="aarch64", directory=tmp_path, kernel=tmp_path / "k", initrd=tmp_path / "i", console="ttyAMA0")
    cmd = qemu_command(image, tmp_path / "i", guestfwd={}, ssh_port=2222)
    assert "restrict=on" in cmd[cmd.index("-netdev") + 1]
    assert cmd[cmd.index("-accel") + 1] == "tcg"
