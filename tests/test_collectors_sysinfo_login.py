"""The system_information and login collectors against the snapshot trees."""

import json
import os
import shutil
import struct

import pytest

from conftest import FIXTURES, events, run_agent

BUSYBOX = FIXTURES / "busybox-device"
DEBIAN = FIXTURES / "debian-system"


def payload(out, name):
    evs = events(out, name)
    assert len(evs) == 1, f"expected one {name} event, got {len(evs)}"
    return evs[0]["Payload"]


def once(agent, root, config=None, tmp_path=None):
    args = ["--once", "--root", str(root)]
    if config is not None:
        cfg = tmp_path / "config.json"
        cfg.write_text(json.dumps(config))
        os.chmod(cfg, 0o600)
        args += ["--config", str(cfg)]
    return run_agent(agent, *args).stdout


def logins(out):
    return {(p["Operation"], p["UserName"], p["RemoteAddress"], p["Executable"], p["Source"]): p
            for p in payload(out, "Login")}


def test_system_information_busybox_device(agent):
    (info,) = payload(once(agent, BUSYBOX), "SystemInformation")
    assert info["OsName"] == "Buildroot" and info["OsVersion"] == "2024.02.6"
    assert info["KernelRelease"] == "6.1.92" and info["Hostname"] == "gw-100"
    assert info["Architecture"] == "aarch64"
    # the manufacturing sysinfo.json wins where there is no DMI
    assert info["HardwareVendor"] == "Acme Devices" and info["HardwareModel"] == "Gateway GW-100"
    assert info["FirmwareVersion"] == "3.1.4"
    nics = {n["Name"]: n for n in info["Nics"]}
    assert nics["eth0"]["Type"] == "ETH" and nics["eth0"]["Mac"] == "02:42:ac:11:00:02"
    assert nics["wlan0"]["Type"] == "WIFI" and nics["lo"]["Type"] == "LOOPBACK"
    assert nics["eth0"]["Ipv6"] == ["fe80::42:acff:fe11:2"]
    assert info["UptimeSeconds"] == 345678


def test_system_information_debian_dmi(agent):
    (info,) = payload(once(agent, DEBIAN), "SystemInformation")
    assert info["OsPrettyName"] == "Debian GNU/Linux 12 (bookworm)"
    assert info["HardwareVendor"] == "QEMU" and info["FirmwareVendor"] == "SeaBIOS"
    assert info["Nics"][0]["Name"] in ("eth0", "lo")


def test_system_information_on_this_machine(agent):
    (info,) = payload(run_agent(agent, "--once").stdout, "SystemInformation")
    assert info["Architecture"] == os.uname().machine
    assert info["KernelRelease"] == os.uname().release
    assert any(n["Ipv4"] for n in info["Nics"]), "no NIC with an IPv4 address on this machine?"


def test_login_busybox_device(agent):
    got = logins(once(agent, BUSYBOX))
    fails = got[("LoginFailed", "root", "203.0.113.5", "dropbear", "syslog")]
    assert fails["HitCount"] == 2 and fails["RemotePort"] == 51000
    enum = got[("LoginFailed", "", "203.0.113.5", "dropbear", "syslog")]
    assert enum["InvalidUser"] is True
    assert ("Login", "root", "192.168.1.20", "dropbear", "syslog") in got
    assert ("Logout", "root", "192.168.1.20", "dropbear", "syslog") in got
    busybox_fail = got[("LoginFailed", "admin", "", "login", "syslog")]
    assert busybox_fail["Weight"] == 3 and busybox_fail["Terminal"] == "ttyS0"
    assert ("Login", "root", "", "login", "syslog") in got  # "root login on 'ttyS0'"
    assert ("Login", "root", "", "login", "wtmp") in got
    assert len(got) == 7


def test_login_debian_system(agent):
    got = logins(once(agent, DEBIAN))
    assert got[("LoginFailed", "alice", "192.0.2.10", "sshd", "syslog")]["TimestampUTC"] == "2025-11-22T01:00:05Z"
    assert ("Login", "alice", "192.0.2.10", "sshd", "syslog") in got
    assert ("Logout", "alice", "", "sshd", "syslog") in got
    invalid = got[("LoginFailed", "admin", "198.51.100.7", "sshd", "syslog")]
    assert invalid["InvalidUser"] is True and invalid["RemotePort"] == 41000
    assert ("LoginFailed", "root", "198.51.100.7", "sshd", "syslog") in got
    assert ("Login", "bob", "2001:db8::20", "sshd", "syslog") in got
    assert ("LoginFailed", "root", "", "su", "syslog") in got and ("Login", "root", "", "su", "syslog") in got
    # wtmp: login and logout of alice on pts/0 (the logout record has no user), bob's session
    assert ("Login", "alice", "192.0.2.10", "login", "wtmp") in got
    assert ("Logout", "alice", "192.0.2.10", "login", "wtmp") in got
    assert ("Login", "bob", "2001:db8::20", "login", "wtmp") in got
    # btmp: failed attempts
    assert ("LoginFailed", "admin", "198.51.100.7", "login", "btmp") in got
    # "Invalid user" alone is not a second failure: it precedes "Failed password"
    assert invalid["HitCount"] == 1


def test_login_files_are_followed_across_cycles(agent_factory, tmp_path):
    """--replay: each step adds lines to the same log (same inode); only new lines count."""
    build = agent_factory()
    log = tmp_path / "shared-auth.log"
    steps = tmp_path / "replay"
    lines = [
        "Nov 22 01:00:00 dev authpriv.warn dropbear[1]: Bad password attempt for 'root' from 203.0.113.9:1000\n",
        "Nov 22 01:00:05 dev authpriv.warn dropbear[1]: Bad password attempt for 'root' from 203.0.113.9:1001\n",
    ]
    for i, line in enumerate(lines):
        with open(log, "a") as fh:
            fh.write(line)
        d = steps / f"{i:03d}" / "var" / "log"
        d.mkdir(parents=True)
        os.link(log, d / "messages")  # a hard link keeps the inode: the file "grows"
    # the hard links share one inode: step 000 sees the final content, so two lines, step 001 none new
    out = run_agent(build, "--replay", str(steps)).stdout
    fails = [p for e in events(out, "Login") for p in e["Payload"] if p["Operation"] == "LoginFailed"]
    assert sum(p["HitCount"] for p in fails) == 2


def test_login_rotation_reads_new_file_from_start(agent_factory, tmp_path):
    build = agent_factory()
    steps = tmp_path / "replay"
    for i in range(2):
        d = steps / f"{i:03d}" / "var" / "log"
        d.mkdir(parents=True)
        (d / "messages").write_text(
            f"Nov 22 01:0{i}:00 dev authpriv.warn dropbear[1]: Bad password attempt for 'u{i}' from 203.0.113.9:1000\n")
    out = run_agent(build, "--replay", str(steps)).stdout
    users = {p["UserName"] for e in events(out, "Login") for p in e["Payload"]}
    assert users == {"u0", "u1"}


def test_login_hostile_logs_and_utmp(agent, tmp_path):
    log = tmp_path / "var" / "log"
    log.mkdir(parents=True)
    hostile = [
        b"Nov 22 01:00:00 dev sshd[1]: Failed password for " + b"A" * 100000 + b" from 1.2.3.4 port 1 ssh2\n",
        b"Nov 22 01:00:01 dev sshd[1]: Failed password for \xff\xfe\x00bad from 203.0.113.1 port 22 ssh2\n",
        b"Nov 22 01:00:02 dev sshd[1]: Failed password for\n",
        b"Nov 22 01:00:03 dev dropbear[1]: Bad password attempt for 'x\n",
        b"Nov 22 01:00:04 dev dropbear[1]: Exit (\n",
        b"Xyz 99 99:99:99 dev sshd[1]: Accepted password for z from 1.1.1.1 port 1 ssh2\n",
        b"Nov 22 01:00:05 dev su[1]: + \n",
        b"\x00\x00\x00 garbage with no newline at the end",
    ]
    (log / "auth.log").write_bytes(b"".join(hostile))
    (log / "wtmp").write_bytes(os.urandom(384 * 3 + 100))
    (log / "btmp").write_bytes(b"\xff" * 383)
    out = run_agent(agent, "--once", "--root", str(tmp_path)).stdout
    got = logins(out)
    bad = [k for k in got if k[2] == "203.0.113.1"]
    assert len(bad) == 1 and "\ufffd" in bad[0][1]  # invalid UTF-8 replaced, JSON stays valid
    assert not any(k[1] == "z" for k in got)  # a line with a bad timestamp is not trusted
    # a random wtmp either yields records with cleaned text or nothing: the output parsed as JSON above


def test_no_login_files_means_no_login_event(agent, tmp_path):
    out = run_agent(agent, "--once", "--root", str(tmp_path)).stdout
    assert events(out, "Login") == []


def test_login_log_files_are_configurable(agent, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(BUSYBOX / "var", root / "var")
    (root / "var" / "log" / "messages").rename(root / "var" / "log" / "custom.log")
    out = once(agent, root, {"Login_LogFiles": "/var/log/custom.log", "Login_UseUtmp": False}, tmp_path)
    assert all(p["Source"] == "syslog" for p in payload(out, "Login"))
    assert len(payload(out, "Login")) == 6
