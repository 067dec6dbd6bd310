"""The process, network_activity and listening_ports collectors: what they
report for the snapshot trees, across replayed steps, on hostile /proc input,
and on this machine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from conftest import FIXTURES, events, messages, run_agent
from defender_iot.build import AgentBuild
from defender_iot.features import load_features

sys.path.insert(0, str(FIXTURES))
import make_busy_system as mbs  # noqa: E402  (the writers of the fixture trees' /proc formats)

MINE = {"process", "network_activity", "listening_ports", "heartbeat"}


@pytest.fixture(scope="module")
def build(agent_factory) -> AgentBuild:
    """Only these three collectors (and heartbeat) and the local transport:
    no detector (the C tests check what detectors are handed)."""
    feats = load_features()
    opts: Dict[str, bool] = {c.option: False for c in feats.of("collector") if c.name not in MINE}
    opts.update({d.option: False for d in feats.of("detector")})
    opts.update({t.option: t.name == "local" for t in feats.of("transport")})
    return agent_factory(opts)


def config(tmp_path: Path, **keys) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"Agent_StateDirectory": str(tmp_path / "state"), **keys}))
    os.chmod(path, 0o600)
    return str(path)


def payload(stdout: str, name: str) -> List[dict]:
    return [p for e in events(stdout, name) for p in e["Payload"]]


def once(build: AgentBuild, root: Path | str, *args: str) -> str:
    return run_agent(build, "--once", "--root", str(root), *args, timeout=30).stdout


# ---- the snapshot trees ----

BUSYBOX_PROCESSES = {
    # (CommandLine, Uid, UserName, Executable): number of processes
    ("init", 0, "root", "/bin/busybox"): 1,
    ("/sbin/syslogd -n", 0, "root", "/bin/busybox"): 1,
    ("/sbin/klogd -n", 0, "root", "/bin/busybox"): 1,
    ("/usr/sbin/dropbear -R", 0, "root", "/usr/sbin/dropbear"): 2,
    ("/usr/sbin/telnetd -F -l /bin/login", 0, "root", "/bin/busybox"): 1,
    ("-sh", 0, "root", "/bin/busybox"): 2,
    ("watchdog -t 5 /dev/watchdog", 0, "root", "/bin/busybox"): 1,
    ("/usr/sbin/ntpd -n -p pool.ntp.org", 0, "root", "/bin/busybox"): 1,
    ("/usr/sbin/defender-iot-agent --config /etc/defender-iot/config.json", 990, "defender-iot",
     "/usr/sbin/defender-iot-agent"): 1,
}

DEBIAN_PROCESSES = {
    ("/sbin/init", 0, "root", "/usr/lib/systemd/systemd"): 1,
    ("/lib/systemd/systemd-journald", 0, "root", "/usr/lib/systemd/systemd-journald"): 1,
    ("/sbin/dhclient -4 -v -pf /run/dhclient.eth0.pid eth0", 0, "root", "/usr/sbin/dhclient"): 1,
    ("sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", 0, "root", "/usr/sbin/sshd"): 1,
    ("nginx: master process /usr/sbin/nginx -g daemon on; master_process on;", 0, "root", "/usr/sbin/nginx"): 1,
    ("nginx: worker process", 33, "www-data", "/usr/sbin/nginx"): 1,
    ("sshd: bob [priv]", 0, "root", "/usr/sbin/sshd"): 1,
    ("sshd: bob@pts/0", 1001, "bob", "/usr/sbin/sshd"): 1,
    ("-bash", 1001, "bob", "/usr/bin/bash"): 1,
    ("ping 192.0.2.1", 1001, "bob", "/usr/bin/ping"): 1,
}


def process_table(stdout: str) -> Dict[Tuple, int]:
    entries = payload(stdout, "Process")
    assert {e["EventType"] for e in entries} == {"Running"}
    return {(e["CommandLine"], e["Uid"], e["UserName"], e["Executable"]): e["HitCount"] for e in entries}


@pytest.mark.parametrize("tree,expected", [("busybox-device", BUSYBOX_PROCESSES),
                                           ("debian-system", DEBIAN_PROCESSES)])
def test_first_pass_reports_every_process_running(build, tree, expected):
    out = once(build, FIXTURES / tree)
    assert process_table(out) == expected  # kernel threads (kthreadd) are left out


def test_process_ids_and_parents(build):
    entries = payload(once(build, FIXTURES / "debian-system"), "Process")
    by_cmd = {e["CommandLine"]: e for e in entries}
    assert (by_cmd["sshd: bob@pts/0"]["ProcessId"], by_cmd["sshd: bob@pts/0"]["ParentProcessId"]) == (992, 990)
    assert (by_cmd["-bash"]["ProcessId"], by_cmd["-bash"]["ParentProcessId"]) == (993, 992)
    assert by_cmd["nginx: worker process"]["ParentProcessId"] == 720


def listening(stdout: str) -> Set[Tuple]:
    return {(p["Protocol"], p["LocalAddress"], p["LocalPort"], p["ProcessId"], p["Executable"], p["Uid"])
            for p in payload(stdout, "ListeningPorts")}


def connections(stdout: str) -> Set[Tuple]:
    return {(p["Protocol"], p["LocalAddress"], p["LocalPort"], p["RemoteAddress"], p["RemotePort"], p["State"],
             p["ProcessId"], p["Executable"], p["Uid"]) for p in payload(stdout, "NetworkActivity")}


def test_busybox_listening_ports_and_connections(build):
    out = once(build, FIXTURES / "busybox-device")
    assert listening(out) == {
        ("tcp", "0.0.0.0", 22, 201, "/usr/sbin/dropbear", 0),
        ("tcp6", "::", 22, 201, "/usr/sbin/dropbear", 0),
        ("tcp", "0.0.0.0", 23, 215, "/bin/busybox", 0),
    }
    assert connections(out) == {
        ("tcp", "192.168.1.50", 41876, "203.0.113.10", 8883, "ESTABLISHED", 300, "/usr/sbin/defender-iot-agent", 990),
        ("tcp6", "fe80::42:acff:fe11:2", 22, "fe80::8c1:2ff:fe03:405", 50222, "ESTABLISHED", 512,
         "/usr/sbin/dropbear", 0),
        ("udp", "192.168.1.50", 38211, "198.51.100.123", 123, "ESTABLISHED", 250, "/bin/busybox", 0),
    }
    for p in payload(out, "NetworkActivity"):
        assert p["HitCount"] == 1 and p["Inode"] > 0


def test_debian_listening_ports_and_connections(build):
    out = once(build, FIXTURES / "debian-system")
    nginx = "/usr/sbin/nginx"
    # The master and its worker share the listeners: the lowest pid owns them.
    assert listening(out) == {
        ("tcp", "0.0.0.0", 22, 700, "/usr/sbin/sshd", 0),
        ("tcp6", "::", 22, 700, "/usr/sbin/sshd", 0),
        ("tcp", "0.0.0.0", 80, 720, nginx, 0),
        ("tcp", "0.0.0.0", 443, 720, nginx, 0),
        ("tcp6", "::", 80, 720, nginx, 0),
        ("tcp6", "::", 443, 720, nginx, 0),
        ("udp", "0.0.0.0", 68, 650, "/usr/sbin/dhclient", 0),
    }
    assert connections(out) == {
        ("tcp", "192.0.2.5", 443, "198.51.100.30", 60123, "ESTABLISHED", 721, nginx, 33),
        ("tcp6", "2001:db8::10", 22, "2001:db8::20", 52000, "ESTABLISHED", 990, "/usr/sbin/sshd", 0),
        # closed, in TIME_WAIT: no process holds it any more
        ("tcp", "192.0.2.5", 22, "192.0.2.10", 50010, "TIME_WAIT", 0, "", 0),
        # ping's raw ICMP socket: the IP protocol in RemotePort
        ("raw", "0.0.0.0", 0, "0.0.0.0", 1, "CLOSE", 1100, "/usr/bin/ping", 1001),
    }


def test_masking_hides_remote_addresses_of_connections(build, tmp_path):
    out = once(build, FIXTURES / "debian-system", "--config", config(tmp_path, Agent_MaskRemoteAddresses=True))
    remotes = {p["RemoteAddress"] for p in payload(out, "NetworkActivity")}
    assert remotes and all(r.startswith("masked-") for r in remotes)
    assert "198.51.100.30" not in out and "2001:db8::20" not in out


# ---- replayed steps: starts, exits, new connections ----

def test_replay_reports_starts_exits_and_new_connections_once(build, tmp_path):
    steps = tmp_path / "steps"
    first, second = steps / "000", steps / "001"
    shutil.copytree(FIXTURES / "busybox-device", first, symlinks=True)
    shutil.copytree(FIXTURES / "busybox-device", second, symlinks=True)
    # Step 001: the login shell 513 has exited, wget (600) started and opened
    # a connection, and pid 250 was reused by another program.
    shutil.rmtree(second / "proc" / "513")
    shutil.rmtree(second / "proc" / "250")
    mbs.write_process(second, mbs.Proc(600, 230, "wget", ["wget", "-O", "/tmp/x", "http://198.51.100.9/x"],
                                       "/bin/busybox", fds={3: "socket:[5600]"}, starttime=350000))
    mbs.write_process(second, mbs.Proc(250, 1, "udhcpc", ["udhcpc", "-i", "eth0"], "/bin/busybox",
                                       starttime=350100))
    tcp = (second / "proc" / "net" / "tcp").read_text()
    # 192.168.1.50:46578 -> 198.51.100.9:80
    tcp += ("   3: 3201A8C0:B5F2 096433C6:0050 01 00000000:00000000 00:00000000 00000000     0        0 5600 1 "
            "ffff88800a05e000 20 4 30 10 -1\n")
    (second / "proc" / "net" / "tcp").write_text(tcp)

    out = run_agent(build, "--replay", str(steps), "--step", "30", timeout=30).stdout
    entries = payload(out, "Process")
    started = {(e["EventType"], e["CommandLine"], e["ProcessId"]) for e in entries if e["EventType"] != "Running"}
    assert started == {
        ("Exit", "-sh", 513),
        ("Start", "wget -O /tmp/x http://198.51.100.9/x", 600),
        ("Exit", "/usr/sbin/ntpd -n -p pool.ntp.org", 250),
        ("Start", "udhcpc -i eth0", 250),
    }
    conns = payload(out, "NetworkActivity")
    wget = [c for c in conns if c["RemoteAddress"] == "198.51.100.9"]
    assert len(wget) == 1 and wget[0]["ProcessId"] == 600 and wget[0]["RemotePort"] == 80
    # A connection that stays open is reported once, not once per poll.
    agent = [c for c in conns if c["RemotePort"] == 8883]
    assert len(agent) == 1 and agent[0]["HitCount"] == 1


# ---- hostile /proc input ----

@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "busybox-device", root, symlinks=True)
    return root


def run_hostile(build: AgentBuild, root: Path) -> subprocess.CompletedProcess:
    proc = run_agent(build, "--once", "--root", str(root), check=False, timeout=20)
    assert proc.returncode == 0, proc.stderr
    msgs = messages(proc.stdout)  # every line parses as JSON
    assert len(msgs) >= 1
    return proc


def test_truncated_and_empty_proc_files(build, tree):
    (tree / "proc" / "201" / "stat").write_text("201 (dropbear) S 1 201")
    (tree / "proc" / "152" / "status").write_text("Name:\tklogd\nUi")
    for f in ("stat", "status", "cmdline", "exe"):
        (tree / "proc" / "150" / f).unlink()
    (tree / "proc" / "1" / "cmdline").write_bytes(b"")
    # the IPv6 table cut in the middle of its second line
    t6 = (tree / "proc" / "net" / "tcp6").read_text()
    (tree / "proc" / "net" / "tcp6").write_text(t6[: t6.index("\n", t6.index("\n") + 1) + 40])
    (tree / "proc" / "net" / "snmp").write_text("Tcp: ActiveOpens\nUdp: 1 2 3\n")
    out = run_hostile(build, tree).stdout
    cmds = {e["CommandLine"]: e for e in payload(out, "Process")}
    assert "/sbin/syslogd -n" not in cmds  # no files: skipped
    assert ("/usr/sbin/dropbear -R", 201) not in {(c, e["ProcessId"]) for c, e in cmds.items()}
    assert cmds["/sbin/klogd -n"]["Uid"] == -1  # status without its Uid line: unknown
    assert "[init]" in cmds  # an empty command line shows the name
    ports = listening(out)
    assert ("tcp6", "::", 22, 201, "/usr/sbin/dropbear", 0) in ports  # the complete line survives
    assert not any(c[0] == "tcp6" for c in connections(out))  # the cut one does not


def test_a_proc_pid_directory_without_files(build, tree):
    (tree / "proc" / "4242").mkdir()
    (tree / "proc" / "4243" / "fd").mkdir(parents=True)
    out = run_hostile(build, tree).stdout
    assert {e["ProcessId"] for e in payload(out, "Process")} >= {1, 201, 300}
    assert 4242 not in {e["ProcessId"] for e in payload(out, "Process")}


def test_huge_and_non_utf8_command_lines(build, tree):
    (tree / "proc" / "300" / "cmdline").write_bytes(b"/usr/bin/miner\0" + b"A" * 100_000 + b"\0")
    (tree / "proc" / "240" / "cmdline").write_bytes(b"watch\xffdog\0-t\0\x1b[2J\0")
    (tree / "proc" / "240" / "stat").write_bytes(
        (tree / "proc" / "240" / "stat").read_bytes().replace(b"(watchdog)", b"(w\xc3) x\n)"))
    os.unlink(tree / "proc" / "215" / "exe")
    os.symlink(b"/tmp/.x\xfe (deleted)", tree / "proc" / "215" / "exe")
    out = run_hostile(build, tree).stdout
    by_pid = {e["ProcessId"]: e for e in payload(out, "Process")}
    miner = by_pid[300]["CommandLine"]
    assert miner.startswith("/usr/bin/miner AAAA") and len(miner.encode()) <= 4096
    assert by_pid[240]["CommandLine"] == "watch\ufffddog -t  [2J"
    assert by_pid[215]["Executable"] == "/tmp/.x\ufffd (deleted)"


def test_fifos_planted_as_proc_files(build, tree):
    planted = [tree / "proc" / "net" / "tcp", tree / "proc" / "net" / "snmp", tree / "proc" / "300" / "cmdline",
               tree / "proc" / "240" / "stat"]
    for path in planted:
        path.unlink()
        os.mkfifo(path)
    # hold the FIFOs open for writing without writing: a blocking read would hang
    holders = [os.open(path, os.O_RDWR) for path in planted]
    try:
        out = run_hostile(build, tree).stdout
    finally:
        for fd in holders:
            os.close(fd)
    ports = listening(out)
    assert ("tcp6", "::", 22, 201, "/usr/sbin/dropbear", 0) in ports
    assert not any(p[0] == "tcp" for p in ports)
    by_pid = {e["ProcessId"]: e for e in payload(out, "Process")}
    assert 240 not in by_pid  # no stat: not reported
    assert by_pid[300]["CommandLine"] == "[defender-iot-ag]"  # no command line: the name


def test_hostile_fd_links_and_socket_tables(build, tree):
    fd = tree / "proc" / "201" / "fd"
    os.symlink("socket:[abc]", fd / "7")
    os.symlink("socket:[99999999999999999999999]", fd / "8")
    os.symlink("x" * 200, fd / "9")
    tcp = tree / "proc" / "net" / "tcp"
    with open(tcp, "ab") as fh:
        fh.write(b"   9: " + b"F" * 5000 + b"\n")              # overlong
        fh.write(b"\xff\xfe\x00garbage\n")
        fh.write(b"  10: 0100007F:0277 00000000:0000 0A\n")    # truncated
    out = run_hostile(build, tree).stdout
    assert ("tcp", "0.0.0.0", 22, 201, "/usr/sbin/dropbear", 0) in listening(out)
    assert len(payload(out, "ListeningPorts")) == 3


# ---- this machine ----

def test_this_process_on_the_real_machine(build, tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    try:
        # a busy machine has more than the default 256 entries to cache
        cfg = config(tmp_path, Process_CacheSize=65536, NetworkActivity_CacheSize=65536)
        out = run_agent(build, "--once", "--config", cfg, timeout=60).stdout
    finally:
        for s in (client, server, listener):
            s.close()
    me = os.getpid()
    exe = os.path.realpath(f"/proc/{me}/exe")
    cmdline = Path(f"/proc/{me}/cmdline").read_bytes().rstrip(b"\0").replace(b"\0", b" ").decode()[:4096]
    procs = payload(out, "Process")
    mine = [p for p in procs if p["CommandLine"] == cmdline]
    assert mine and mine[0]["Executable"] == exe and mine[0]["Uid"] == os.getuid()
    assert me in {p["ProcessId"] for p in mine}
    assert ("tcp", "127.0.0.1", port, me, exe, os.getuid()) in listening(out)
    conns = connections(out)
    assert any(c[:3] == ("tcp", "127.0.0.1", port) and c[5] == "ESTABLISHED" and c[6] == me for c in conns), conns


def test_polling_mode_leaves_the_proc_connector_alone(build, tmp_path):
    polling = run_agent(build, "--once", "--config", config(tmp_path, Process_Mode="Polling", Agent_LogLevel="debug"))
    assert "proc connector" not in polling.stderr
    assert payload(polling.stdout, "Process")  # polled instead
    auto = run_agent(build, "--once", "--config", config(tmp_path, Agent_LogLevel="debug")).stderr
    assert "from the netlink proc connector" in auto or "proc connector not available" in auto
    assert "warning: process" not in auto  # Auto falls back silently


@pytest.mark.parametrize("key,value,expected", [
    ("Process_Mode", "Sometimes", "Auto|Netlink|Polling"),
    ("Process_PollingInterval", 10, "100"),
    ("NetworkActivity_PollingInterval", "fast", "integer"),
])
def test_bad_collector_settings_are_refused_naming_the_key(build, tmp_path, key, value, expected):
    proc = run_agent(build, "--once", "--config", config(tmp_path, **{key: value}), check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and expected in lines[0], lines


def test_netlink_sees_a_short_lived_process(build, tmp_path):
    """With /proc polling once an hour, the start and exit of a process that
    lives one second can only come from the proc connector."""
    cfg = config(tmp_path, Process_Mode="Netlink", Process_PollingInterval=3600000,
                 CollectorsCore_PriorityIntervals="0.02,0.02,0.02", Agent_LogLevel="debug",
                 NetworkActivity_Disabled=True, ListeningPorts_Disabled=True,
                 Agent_Transport="local", Local_Path=str(tmp_path / "messages.jsonl"))
    # Messages go to a file: a pipe nobody reads yet would fill and stall the agent.
    agent = subprocess.Popen([str(build.binary), "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    try:
        time.sleep(1.0)
        marker = f"netlink-marker-{os.getpid()}"
        # two commands, so the shell forks sleep instead of becoming it
        subprocess.run(["/bin/sh", "-c", "sleep 1; true", marker], check=True)
        time.sleep(2.5)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    out = (tmp_path / "messages.jsonl").read_text()
    if "proc connector is not available" in err:
        pytest.skip("the kernel or privileges do not allow the proc connector here")
    assert "from the netlink proc connector" in err
    seen = {(p["EventType"], p["ProcessId"]) for p in payload(out, "Process")
            if p["CommandLine"] == f"/bin/sh -c sleep 1; true {marker}"}
    types = {t for t, _ in seen}
    assert len({pid for _, pid in seen}) == 1, seen
    if "events lost" in err:
        # The socket overflowed under the load of the machine: the next
        # /proc pass would make up for the exit, an hour from now here.
        assert "Start" in types, seen
    else:
        assert types == {"Start", "Exit"}, seen
