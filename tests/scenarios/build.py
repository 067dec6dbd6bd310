"""Turn a detector scenario (tests/scenarios/<kind>/<name>.json) into the
snapshot trees that `defender-iot-agent --replay DIR --step S` reads: one
tree per collection cycle, DIR/000, DIR/001, ..., each a /proc (processes,
socket tables, /proc/net/snmp) and /var/log/auth.log holding the log lines
written during that cycle.

A scenario is a JSON object:

    {"description": "...", "step_seconds": 30, "config": {...keys...},
     "base": {"processes": [PROC...], "sockets": [SOCK...], "snmp": {"Tcp": {...}, "Udp": {...}, "Icmp": {...}}}
             or "@device" (bases/device.json),
     "steps": [STEP, ...],            # cycle k applies steps[k] to the state of cycle k-1
     "repeat_last": N,                # then N more cycles with no change (time passes)
     "busy_base": {"processes": 300, "sockets": 500},   # start from make_busy_system's device
     "expect": [{"Name": "BruteForce", "by_step": 1, "Evidence": {...subset...}, "State": "Active"}]}

    PROC = {"pid", "comm", "exe", "cmdline": [...], "uid", "fds": {"0": "socket:[7]"}, "utime", "ppid"}
    SOCK = {"table": "tcp", "local": [addr, port], "remote": [addr, port], "state": "ESTABLISHED",
            "inode": 7, "owner": PID}        # the owner gets an fd socket:[inode]
    STEP = {"add_processes": [PROC], "remove_pids": [PID], "add_sockets": [SOCK], "remove_inodes": [INODE],
            "cpu": {"PID": ticks added to utime this cycle}, "snmp": {...counters to set...},
            "auth_log": ["sshd[88]: Failed password for root from 203.0.113.7 port 4711 ssh2", ...],
            "churn": {"count": N, "seed": S, "max_ticks": T}}   # N connections replaced, CPU noise

`expect` with an empty list means the scenario must raise no alert at all.
Log lines get a syslog prefix with a time inside the cycle (a line may be
[seconds_before_the_cycle_ends, "text"]); the replay clock starts at
2026-01-01T00:00:00Z.
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures"))
import make_busy_system as mbs  # noqa: E402  (the kernel-format writers the fixture trees use)

REPLAY_START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class Scenario:
    path: Path
    description: str
    step_seconds: int
    config: Dict[str, Any]
    base: Dict[str, Any]
    steps: List[Dict[str, Any]]
    expect: List[Dict[str, Any]]
    repeat_last: int = 0
    busy_base: Dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.stem}"

    @property
    def cycles(self) -> int:
        return len(self.steps) + self.repeat_last


def load(path: Path) -> Scenario:
    doc = json.loads(path.read_text())
    base = doc.get("base", {})
    if isinstance(base, str):  # "@device": a shared starting system under bases/
        base = json.loads((HERE / "bases" / f"{base.lstrip('@')}.json").read_text())
    return Scenario(path=path, description=doc.get("description", ""), step_seconds=doc.get("step_seconds", 30),
                    config=doc.get("config", {}), base=base, steps=doc.get("steps", [{}]),
                    expect=doc.get("expect", []), repeat_last=doc.get("repeat_last", 0),
                    busy_base=doc.get("busy_base", {}))


def all_scenarios(kind: str) -> List[Path]:
    return sorted((HERE / kind).glob("*.json"))


def _proc(d: Dict[str, Any]) -> mbs.Proc:
    return mbs.Proc(pid=d["pid"], ppid=d.get("ppid", 1), comm=d["comm"], cmdline=d.get("cmdline", [d["comm"]]),
                    exe=d.get("exe"), uid=d.get("uid", 0), fds={int(k): v for k, v in d.get("fds", {}).items()},
                    utime=d.get("utime", 3), stime=d.get("stime", 2))


def _sock(d: Dict[str, Any]) -> mbs.Sock:
    return mbs.Sock(table=d["table"], local=tuple(d["local"]), remote=tuple(d.get("remote", ["0.0.0.0", 0])),
                    state=d.get("state", "ESTABLISHED"), uid=d.get("uid", 0), inode=d["inode"])


def _syslog_time(t: datetime) -> str:
    return f"{t.strftime('%b')} {t.day:2d} {t.strftime('%H:%M:%S')}"


class _State:
    def __init__(self, sc: Scenario):
        self.procs: Dict[int, mbs.Proc] = {}
        self.socks: Dict[Any, mbs.Sock] = {}
        self.owner: Dict[int, int] = {}
        self.snmp: Dict[str, Dict[str, int]] = {"Tcp": {}, "Udp": {}, "Icmp": {}}
        if sc.busy_base:
            self._busy(sc.busy_base)
        self.apply({"add_processes": sc.base.get("processes", []), "add_sockets": sc.base.get("sockets", []),
                    "snmp": sc.base.get("snmp", {})})

    def _busy(self, opts: Dict[str, int]) -> None:
        """Start from the synthetic busy system (300 processes, 500 sockets)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            mbs.busy_system(root, opts.get("processes", 300), opts.get("sockets", 500), opts.get("seed", 1))
            for d in (root / "proc").iterdir():
                if not d.name.isdigit():
                    continue
                stat = (d / "stat").read_text()
                comm = stat[stat.index("(") + 1:stat.rindex(")")]
                rest = stat[stat.rindex(")") + 2:].split()
                fds = {int(f.name): str(f.readlink()) for f in (d / "fd").iterdir()}
                exe = str((d / "exe").readlink()) if (d / "exe").is_symlink() else None
                cmd = [a.decode() for a in (d / "cmdline").read_bytes().split(b"\0") if a]
                uid = int((d / "status").read_text().split("Uid:\t")[1].split("\t")[0])
                pid = int(d.name)
                self.procs[pid] = mbs.Proc(pid, int(rest[1]), comm, cmd, exe, uid=uid, fds=fds,
                                           utime=int(rest[11]), stime=int(rest[12]))
                for fd, target in fds.items():
                    if target.startswith("socket:["):
                        self.owner[int(target[8:-1])] = pid
            for table in ("tcp", "tcp6", "udp", "udp6"):
                v6 = table.endswith("6")
                for line in (root / "proc" / "net" / table).read_text().splitlines()[1:]:
                    f = line.split()
                    inode = int(f[9])
                    self.socks[inode] = mbs.Sock(table, _unhex(f[1], v6), _unhex(f[2], v6),
                                                 _state_name(int(f[3], 16)), int(f[7]), inode)

    def apply(self, step: Dict[str, Any]) -> None:
        for pid in step.get("remove_pids", []):
            self.procs.pop(pid, None)
        for inode in step.get("remove_inodes", []):
            self.socks.pop(inode, None)
            pid = self.owner.pop(inode, None)
            if pid in self.procs:
                self.procs[pid].fds = {k: v for k, v in self.procs[pid].fds.items() if v != f"socket:[{inode}]"}
        for d in step.get("add_processes", []):
            p = _proc(d)
            self.procs[p.pid] = p
        for d in step.get("add_sockets", []):
            s = _sock(d)
            # Half-open and TIME_WAIT entries have no inode: key them by their ends.
            self.socks[s.inode or (s.table, s.local, s.remote)] = s
            owner = d.get("owner")
            if owner is not None:
                self.owner[s.inode] = owner
                p = self.procs[owner]
                if f"socket:[{s.inode}]" not in p.fds.values():
                    p.fds[max([9, *p.fds]) + 1] = f"socket:[{s.inode}]"
        churn = step.get("churn")
        if churn:
            self._churn(churn)
        for pid, ticks in step.get("cpu", {}).items():
            self.procs[int(pid)].utime += ticks
        for group, values in step.get("snmp", {}).items():
            self.snmp.setdefault(group, {}).update(values)

    def _churn(self, opts: Dict[str, int]) -> None:
        """A busy system's cycle: some connections close, as many open to
        other HTTPS/MQTT peers, and every process uses a little CPU."""
        import random

        rng = random.Random(opts.get("seed", 0))
        est = [k for k, s in self.socks.items() if s.state == "ESTABLISHED" and k in self.owner]
        for k in rng.sample(est, min(opts.get("count", 0), len(est))):
            self.apply({"remove_inodes": [k]})
        pids = sorted(p for p in self.procs if p != 1)
        next_inode = max([k for k in self.socks if isinstance(k, int)] + [500000]) + 1
        for i in range(opts.get("count", 0)):
            v6 = i % 4 == 0
            self.apply({"add_sockets": [{
                "table": "tcp6" if v6 else "tcp", "local": ["2001:db8::5" if v6 else "192.0.2.5", 40000 + i],
                "remote": [f"2001:db8:2::{rng.randrange(1, 65535):x}" if v6 else
                           f"{rng.randrange(20, 200)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                           rng.choice([443, 8883, 443])],
                "state": "ESTABLISHED", "inode": next_inode + i, "owner": rng.choice(pids)}]})
        for p in self.procs.values():
            p.utime += rng.randrange(opts.get("max_ticks", 300))
        tcp = self.snmp.setdefault("Tcp", {})
        tcp["OutRsts"] = tcp.get("OutRsts", 0) + rng.randrange(20)
        tcp["ActiveOpens"] = tcp.get("ActiveOpens", 0) + opts.get("count", 0)

    def write(self, root: Path, log_lines: List[str]) -> None:
        for p in self.procs.values():
            mbs.write_process(root, p)
        mbs.write_net(root, list(self.socks.values()))
        mbs.write_snmp(root, self.snmp["Tcp"], self.snmp["Udp"], self.snmp["Icmp"])
        etc = root / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\ndev:x:1000:1000::/home/dev:/bin/sh\n")
        log = root / "var" / "log"
        log.mkdir(parents=True, exist_ok=True)
        (log / "auth.log").write_text("".join(line + "\n" for line in log_lines))


def _unhex(text: str, v6: bool):
    import ipaddress
    import struct

    addr, port = text.split(":")
    raw = b"".join(struct.pack("<I", int(addr[i:i + 8], 16)) for i in range(0, len(addr), 8))
    return (str(ipaddress.ip_address(raw)), int(port, 16))


def _state_name(n: int) -> str:
    return {v: k for k, v in mbs.TCP_STATES.items()}[n]


def build(sc: Scenario, out: Path) -> Path:
    """Write the scenario's cycles under out/steps; returns that directory."""
    steps_dir = out / "steps"
    state = _State(sc)
    for k in range(sc.cycles):
        step = copy.deepcopy(sc.steps[k]) if k < len(sc.steps) else {}
        state.apply(step)
        end = REPLAY_START + timedelta(seconds=k * sc.step_seconds)
        lines = []
        for item in step.get("auth_log", []):
            before, text = (item if isinstance(item, list) else [1, item])
            lines.append(f"{_syslog_time(end - timedelta(seconds=before))} device {text}")
        state.write(steps_dir / f"{k:03d}", lines)
    return steps_dir


def config_for(sc: Scenario, out: Path) -> Path:
    """The scenario's config file ({dir} in values is the scenario's folder)."""
    keys = {"Agent_StateDirectory": str(out / "state"), "Login_UseUtmp": False}
    for k, v in sc.config.items():
        keys[k] = v.replace("{dir}", str(sc.path.parent)) if isinstance(v, str) else v
    path = out / "config.json"
    path.write_text(json.dumps(keys))
    path.chmod(0o600)
    return path
