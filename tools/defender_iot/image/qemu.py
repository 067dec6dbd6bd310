"""Booting a test image under QEMU: TCG, the serial console on a pipe, and
restricted user networking. With `restrict=on` the guest reaches nothing but
the explicit forwards below, so attack simulations inside it cannot leave.

Guest-visible services on the host (each forwarded by one socat per
connection to a loopback port; a plain `tcp:` guestfwd takes only one
connection):
  10.0.2.100:8883  the emulated IoT Hub (its certificate names 10.0.2.100)
  10.0.2.101:3333  the fake mining pool (CryptoMiner scenario)
  10.0.2.102:4444  the reverse-shell listener (ReverseShell scenario)
and the host reaches the guest's SSH server on 127.0.0.1:<ssh_port>."""

from __future__ import annotations

import json
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from defender_iot.errors import UserError
from defender_iot.image.builder import CONFIG_PATH, Image
from defender_iot.image.cpio import Archive
from defender_iot.image.target import ConsoleShell

HUB_ADDRESS = ("10.0.2.100", 8883)
POOL_ADDRESS = ("10.0.2.101", 3333)
SHELL_LISTENER_ADDRESS = ("10.0.2.102", 4444)
BOOT_BANNER = "defender-iot-image: up"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def netdev(guestfwd: Mapping[Tuple[str, int], int], ssh_port: Optional[int]) -> str:
    """The -netdev argument. Every QEMU run of this project goes through
    here (tests/integration/test_qemu_isolation.py checks the repository for
    any that does not say restrict=on)."""
    parts = ["user", "id=n0", "restrict=on"]
    for (ip, port), host_port in guestfwd.items():
        parts.append(f"guestfwd=tcp:{ip}:{port}-cmd:socat - TCP:127.0.0.1:{host_port}")
    if ssh_port:
        parts.append(f"hostfwd=tcp:127.0.0.1:{ssh_port}-:22")
    return ",".join(parts)


def qemu_command(image: Image, initrd: Path, *, guestfwd: Mapping[Tuple[str, int], int],
                 ssh_port: Optional[int], memory: int = 256) -> List[str]:
    arch = image.arch_info
    if shutil.which(arch.qemu) is None:
        raise UserError(f"{arch.qemu} not found: apt-get install the packages in scripts/apt/qemu.txt")
    # TCG always: KVM is not there in most CI runners and has hung on others.
    return [arch.qemu, "-accel", "tcg", *arch.machine, "-m", str(memory), "-smp", "1",
            "-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", str(initrd),
            "-append", f"console={arch.console} quiet panic=-1",
            "-netdev", netdev(guestfwd, ssh_port), "-device", f"{arch.nic},netdev=n0"]


def overlay_initrd(image: Image, dest: Path, config: Optional[Mapping[str, object]] = None,
                   files: Optional[Mapping[str, bytes]] = None) -> Path:
    """The image's initrd plus a second archive with this run's files (the
    config with the hub's address, the connection string, the CA): the
    kernel unpacks concatenated archives in order, later files winning, so
    the cached image is never rebuilt for a run."""
    a = Archive()
    if config is not None:
        a.file(CONFIG_PATH, json.dumps({**image.config, **config}, indent=2) + "\n", 0o600)
    for path, data in (files or {}).items():
        a.file(path, data, 0o600)
    base = image.initrd.read_bytes()
    dest.write_bytes(base + b"\0" * (-len(base) % 4) + _gz(a))
    return dest


def _gz(a: Archive) -> bytes:
    import gzip
    return gzip.compress(a.to_bytes(), mtime=0)


@dataclass
class GuestBase:
    """What every way of booting the image shares: `guestfwd` maps
    guest-visible (ip, port) to host loopback ports; `config` and `files`
    go into the run's overlay archive."""
    image: Optional[Image]
    workdir: Path
    guestfwd: Dict[Tuple[str, int], int] = field(default_factory=dict)
    ssh_port: int = 0
    config: Optional[Dict[str, object]] = None
    files: Dict[str, bytes] = field(default_factory=dict)

    @property
    def console_log(self) -> Path:
        raise NotImplementedError

    def console_text(self) -> str:
        try:
            return self.console_log.read_text(errors="replace")
        except OSError:
            return ""

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Guest(GuestBase):
    """A running QEMU guest with a shell on its serial console (pexpect on
    QEMU's stdio). The console goes to `console_log` as it arrives, so a
    failed boot can be shown in full."""
    boot_timeout: float = 180
    spawn: object = None
    shell: Optional[ConsoleShell] = None

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    def start(self) -> "Guest":
        import pexpect
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.ssh_port:
            self.ssh_port = free_port()
        initrd = overlay_initrd(self.image, self.workdir / "initrd-run.gz", self.config, self.files)
        cmd = qemu_command(self.image, initrd, guestfwd=self.guestfwd, ssh_port=self.ssh_port)
        (self.workdir / "qemu-command.txt").write_text(" ".join(cmd) + "\n")
        log = open(self.console_log, "w", encoding="utf-8", errors="replace")
        self.spawn = pexpect.spawn(cmd[0], cmd[1:], encoding="utf-8", codec_errors="replace",
                                   logfile=None, timeout=60, maxread=65536, dimensions=(50, 400))
        self.spawn.logfile_read = log
        try:
            self.spawn.expect_exact(self.image.ready_banner or BOOT_BANNER, timeout=self.boot_timeout)
            self.shell = ConsoleShell(self.spawn, self.image.prompt)
            self.spawn.sendline("")
            self.shell.sync(timeout=60)
        except Exception as e:
            self.stop()
            raise BootFailed(f"{self.image.arch} guest did not reach a shell ({type(e).__name__}); "
                             f"console log {self.console_log}:\n{self.console_text()[-6000:]}") from None
        return self

    def run(self, cmd: str, timeout: float = 60) -> Tuple[int, str]:
        import pexpect
        if self.shell is None:
            raise UserError("the guest is not running")
        try:
            return self.shell.run(cmd, timeout=timeout)
        except (pexpect.TIMEOUT, pexpect.EOF) as e:
            raise GuestHung(f"`{cmd}` got no answer within {timeout} s ({type(e).__name__}); last console "
                            f"output ({self.console_log}):\n{self.console_text()[-4000:]}") from None

    def alive(self) -> bool:
        return self.spawn is not None and self.spawn.isalive()

    def stop(self) -> None:
        if self.spawn is None:
            return
        if self.spawn.isalive():
            self.spawn.terminate(force=True)
        self.spawn.close()
        if self.spawn.logfile_read:
            self.spawn.logfile_read.close()
        self.spawn = None
        self.shell = None


class BootFailed(AssertionError):
    pass


class GuestHung(AssertionError):
    pass


def wait_port(port: int, timeout: float = 60) -> None:
    """Until something accepts on 127.0.0.1:port and keeps the connection
    (slirp's hostfwd accepts and resets until the guest listens)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(5)
                if s.recv(1):
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port} within {timeout} s")
