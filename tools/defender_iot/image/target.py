"""The target interface the integration scenarios are written against:
`run(cmd) -> (status, output)`, nothing else. A QEMU guest's serial console,
a labgrid target (QEMU or a board) or the layer's oeqa test context can
provide it."""

from __future__ import annotations

import base64
import re
import secrets
import shlex
import time
from typing import Callable, Optional, Protocol, Tuple

from defender_iot.errors import UserError


class Target(Protocol):
    def run(self, cmd: str, timeout: float = 60) -> Tuple[int, str]:
        """Run a shell command on the device; (exit status, stdout+stderr)."""


class CommandFailed(AssertionError):
    pass


def check(target: Target, cmd: str, timeout: float = 60) -> str:
    """run() that fails the test, with the command's output, unless it exits 0."""
    status, out = target.run(cmd, timeout=timeout)
    if status != 0:
        raise CommandFailed(f"on the target, `{cmd}` exited {status}:\n{out}")
    return out


# A serial console's line editor takes about 1 KiB per line (BusyBox's
# FEATURE_EDITING_MAX_LEN); files go over in chunks below that.
MAX_LINE = 900


def put_file(target: Target, path: str, data: bytes, mode: str = "0644") -> None:
    """Write a file on the target using only run() (no scp on a serial line)."""
    b64 = base64.b64encode(data).decode()
    tmp = f"{path}.b64"
    check(target, f"rm -f {shlex.quote(tmp)}")
    step = MAX_LINE - 40 - len(tmp)
    for i in range(0, len(b64), step):
        check(target, f"echo {b64[i:i + step]} >> {shlex.quote(tmp)}")
    check(target, f"base64 -d {shlex.quote(tmp)} > {shlex.quote(path)} && rm {shlex.quote(tmp)}"
                  f" && chmod {mode} {shlex.quote(path)}")


def wait_for(what: str, probe: Callable[[], Tuple[bool, object]], timeout: float, interval: float = 1.0):
    """Poll `probe` until it returns (True, value); return value. On timeout
    fail with what was awaited and what the last probe saw."""
    deadline = time.monotonic() + timeout
    seen: object = None
    while True:
        ok, seen = probe()
        if ok:
            return seen
        if time.monotonic() >= deadline:
            text = repr(seen)
            if len(text) > 3000:
                text = text[:1500] + " ... " + text[-1500:]
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {text}")
        time.sleep(interval)


class ConsoleShell:
    """run() over an interactive shell on a character stream (a QEMU serial
    console through pexpect). Each command is framed by markers the shell
    prints, so its output and exit status are read back exactly even though
    the console echoes what is typed."""

    def __init__(self, spawn, prompt: str):
        self.p = spawn
        self.prompt = prompt

    def sync(self, timeout: float = 30) -> None:
        status, out = self.run("true", timeout=timeout)
        if status != 0:
            raise UserError(f"the console shell does not answer: {out!r}")

    def run(self, cmd: str, timeout: float = 60) -> Tuple[int, str]:
        if "\n" in cmd or len(cmd) > MAX_LINE:
            raise ValueError("one command line of at most %d characters (use put_file for data)" % MAX_LINE)
        tag = "DFI" + secrets.token_hex(4)
        # The typed line shows `tag''S`, the output `tagS`: only the output matches.
        self.p.sendline(f"echo {tag}''S; {cmd}; echo {tag}''E$?")
        self.p.expect(re.escape(tag) + r"S\r*\n", timeout=timeout)
        self.p.expect(re.escape(tag) + r"E(\d+)\r*\n", timeout=timeout)
        out = self.p.before.replace("\r\n", "\n").replace("\r", "")
        status = int(self.p.match.group(1))
        return status, out
