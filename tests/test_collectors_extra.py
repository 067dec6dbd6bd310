"""The statistics, sbom and file_integrity collectors against snapshot trees,
replayed steps and hostile input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURES, events, run_agent


def write_config(tmp_path: Path, config: dict) -> str:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(config))
    os.chmod(cfg, 0o600)
    return str(cfg)


def payload(out: str, name: str) -> list:
    return [p for e in events(out, name) for p in e["Payload"]]


# ---- sbom ----

def sbom(agent, root, *args):
    proc = run_agent(agent, "--once", "--root", str(root), *args)
    return {p["Name"]: p for p in payload(proc.stdout, "Sbom")}, proc.stderr


def test_sbom_debian_status_lists_installed_packages_only(agent):
    pkgs, _ = sbom(agent, FIXTURES / "debian-system")
    assert set(pkgs) == {"base-files", "openssh-server", "libssl3"}  # telnetd only has config files left
    ssh = pkgs["openssh-server"]
    assert ssh["Version"] == "1:9.2p1-2+deb12u3" and ssh["Architecture"] == "amd64"
    assert ssh["Vendor"] == "Debian OpenSSH Maintainers <debian-ssh@lists.debian.org>"
    assert ssh["Source"] == "dpkg"


def test_sbom_opkg_status_on_a_busybox_device(agent):
    pkgs, _ = sbom(agent, FIXTURES / "busybox-device")
    assert set(pkgs) == {"busybox", "dropbear", "defender-iot-micro-agent"}  # openssl-bin not-installed
    assert pkgs["dropbear"]["Version"] == "2022.83-r0" and pkgs["dropbear"]["Source"] == "opkg"
    assert pkgs["defender-iot-micro-agent"]["License"] == "MIT"


def test_sbom_buildroot_manifest(agent):
    pkgs, _ = sbom(agent, FIXTURES / "sbom-buildroot")
    assert set(pkgs) == {"busybox", "dropbear", "cjson", "quoted"}
    assert pkgs["busybox"]["License"] == "GPL-2.0, bzip2-1.0.4" and pkgs["busybox"]["Source"] == "buildroot"
    assert pkgs["quoted"]["License"] == 'a "quoted" licence'


@pytest.fixture(scope="module")
def asan(agent_factory):
    """The agent under AddressSanitizer and UBSan, for the hostile inputs."""
    return agent_factory({"AGENT_SANITIZE": True}, build_type="Debug")


@pytest.fixture(params=["release", "asan"])
def any_build(request, agent, asan):
    return agent if request.param == "release" else asan


def test_sbom_hostile_status_file(any_build, tmp_path):
    agent = any_build
    status = tmp_path / "root" / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    stanzas = [b"Package: " + b"A" * 1_000_000 + b"\nStatus: install ok installed\nVersion: 1\n",
               b"\xff\xfe\x00garbage without a colon\n\x01\x02: \x03\n",
               b"Package: bad\xffname\nVersion: 2\x1b[31m\nStatus: install ok installed\n",
               b"Version: no package field\n",
               b"Package: last\nStatus: install ok installed\nVersion: 3"]  # no final newline
    status.write_bytes(b"\n".join(stanzas))
    pkgs, _ = sbom(agent, tmp_path / "root")
    names = sorted(pkgs)
    assert len(names) == 3 and "last" in names and "bad\ufffdname" in names
    long_name = next(n for n in names if n.startswith("AAA"))
    assert len(long_name) <= 256 and pkgs[long_name]["Version"] == "1"
    assert pkgs["bad\ufffdname"]["Version"] == "2 [31m"  # the escape character is cleaned out
    assert pkgs["last"]["Version"] == "3"


def test_sbom_is_capped(agent, tmp_path):
    status = tmp_path / "root" / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    status.write_text("".join(f"Package: p{i}\nStatus: install ok installed\nVersion: {i}\n\n" for i in range(50)))
    cfg = write_config(tmp_path, {"Sbom_MaxPackages": 10})
    pkgs, err = sbom(agent, tmp_path / "root", "--config", cfg)
    assert len(pkgs) == 10
    assert "Sbom_MaxPackages" in err


# ---- file_integrity ----

def make_steps(tmp_path: Path) -> Path:
    """000: the baseline; 001: /etc/shadow's mode changes; 002: /usr/bin/tool is deleted
    and /etc/init.d/S99backdoor created. Unchanged files are hard links across steps, so
    they keep their inode as on a real system."""
    steps = tmp_path / "steps"
    base = steps / "000"
    for d in ("etc/init.d", "usr/bin"):
        (base / d).mkdir(parents=True)
    (base / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (base / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    os.chmod(base / "etc/shadow", 0o600)
    (base / "etc/init.d/S50agent").write_text("#!/bin/sh\n")
    (base / "usr/bin/tool").write_bytes(b"\x7fELF" + b"\0" * 100)
    (base / "usr/bin/big").write_bytes(b"x" * 5000)
    os.symlink("/", base / "usr/bin/escape")  # must not be followed out of the tree
    shutil.copytree(base, steps / "001", copy_function=os.link, symlinks=True)
    shadow = steps / "001/etc/shadow"
    shadow.unlink()
    shutil.copy2(base / "etc/shadow", shadow)  # its own inode, so only this step's copy changes mode
    os.chmod(shadow, 0o644)
    shutil.copytree(steps / "001", steps / "002", copy_function=os.link, symlinks=True)
    (steps / "002/usr/bin/tool").unlink()
    (steps / "002/etc/init.d/S99backdoor").write_text("#!/bin/sh\nnc -l -p 4444 -e /bin/sh\n")
    return steps


def test_file_integrity_replay_reports_each_change_once(any_build, tmp_path):
    agent = any_build
    steps = make_steps(tmp_path)
    cfg = write_config(tmp_path, {"FileIntegrity_Paths": "/etc,/usr/bin", "FileIntegrity_HashMaxBytes": 1024})
    out = run_agent(agent, "--config", cfg, "--replay", str(steps)).stdout
    got = {(p["Path"], p["Change"]): p for p in payload(out, "FileIntegrity")}
    assert set(got) == {("/etc/shadow", "PermissionsChanged"), ("/usr/bin/tool", "Deleted"),
                        ("/etc/init.d/S99backdoor", "Created")}
    shadow = got["/etc/shadow", "PermissionsChanged"]
    assert (shadow["Before"]["Mode"], shadow["After"]["Mode"]) == ("0600", "0644")
    assert shadow["Before"]["Sha256"] == shadow["After"]["Sha256"]
    deleted = got["/usr/bin/tool", "Deleted"]
    assert shadow["TimestampUTC"] < deleted["TimestampUTC"]  # seen at steps 001 and 002
    assert deleted["After"] is None and deleted["Before"]["Size"] == 104
    assert len(deleted["Before"]["Sha256"]) == 64
    created = got["/etc/init.d/S99backdoor", "Created"]
    assert created["Before"] is None and created["After"]["Type"] == "File"
    # the 5000-byte file is over FileIntegrity_HashMaxBytes: metadata only
    assert all(not p.startswith("/usr/bin/escape/") for p, _ in got)


def test_file_integrity_content_change_with_same_size_and_mtime_is_seen(agent, tmp_path):
    """A rewrite that keeps size and mtime (touch -r) is caught by the SHA-256."""
    steps = tmp_path / "steps"
    for i, content in enumerate((b"GOOD", b"EVIL")):
        f = steps / f"{i:03d}" / "etc" / "passwd"
        f.parent.mkdir(parents=True)
        f.write_bytes(content)
        os.utime(f, (1_700_000_000, 1_700_000_000))
    cfg = write_config(tmp_path, {"FileIntegrity_Paths": "/etc/passwd"})
    out = run_agent(agent, "--config", cfg, "--replay", str(steps)).stdout
    (entry,) = payload(out, "FileIntegrity")
    assert entry["Change"] == "Modified" and entry["Before"]["Sha256"] != entry["After"]["Sha256"]


def test_file_integrity_first_pass_is_a_silent_baseline(agent):
    out = run_agent(agent, "--once", "--root", str(FIXTURES / "busybox-device")).stdout
    assert payload(out, "FileIntegrity") == []


def test_file_integrity_max_files_stops_the_walk_without_false_deletions(agent, tmp_path):
    steps = tmp_path / "steps"
    for i in range(2):
        d = steps / f"{i:03d}" / "usr" / "bin"
        d.mkdir(parents=True)
        for n in range(30):
            (d / f"f{n}").write_text("x")
            os.utime(d / f"f{n}", (1_700_000_000, 1_700_000_000))
    cfg = write_config(tmp_path, {"FileIntegrity_Paths": "/usr/bin", "FileIntegrity_MaxFiles": 10})
    proc = run_agent(agent, "--config", cfg, "--replay", str(steps))
    assert "FileIntegrity_MaxFiles" in proc.stderr
    assert not [p for p in payload(proc.stdout, "FileIntegrity") if p["Change"] == "Deleted"]


def test_file_integrity_relative_path_is_refused(agent, tmp_path):
    cfg = write_config(tmp_path, {"FileIntegrity_Paths": "/etc/passwd,etc/shadow"})
    proc = run_agent(agent, "--config", cfg, "--check-config", check=False)
    assert proc.returncode != 0 and "FileIntegrity_Paths" in proc.stderr


# ---- statistics ----

def test_statistics_counts_messages_alerts_and_cache_drops(agent, tmp_path):
    steps = make_steps(tmp_path)
    for step in steps.iterdir():  # a telnet listener in every step: one alert
        os.symlink(FIXTURES / "busybox-device" / "proc", step / "proc")
    cfg = write_config(tmp_path, {"FileIntegrity_Paths": "/etc,/usr/bin", "FileIntegrity_CacheSize": 1})
    out = run_agent(agent, "--config", cfg, "--replay", str(steps), "--step", "86400").stdout
    stats = {p["Name"]: {e["Description"]: e["HitCount"] for e in p["Events"]} for p in payload(out, "Statistics")}
    assert stats["messages"]["built"] >= 1
    assert stats["alerts"]["UnexpectedListeningPort"] >= 1
    assert stats["FileIntegrity"]["dropped: cache full"] == 2  # three changes, a cache of one


def test_file_integrity_hostile_names_and_depth(any_build, tmp_path):
    steps = tmp_path / "steps"
    (steps / "000" / "etc").mkdir(parents=True)
    new = steps / "001" / "etc"
    deep = new / "/".join(["d"] * 12)
    deep.mkdir(parents=True)
    (deep / "too-deep").write_text("x")
    os.mkdir(os.fsencode(new) + b"/bad\xff\nname")
    out = run_agent(any_build, "--config", write_config(tmp_path, {"FileIntegrity_Paths": "/etc"}),
                    "--replay", str(steps)).stdout
    created = {p["Path"] for p in payload(out, "FileIntegrity") if p["Change"] == "Created"}
    assert "/etc/bad\ufffd name" in created  # invalid UTF-8 and the newline cleaned
    assert "/etc/" + "/".join(["d"] * 8) in created and not any(p.endswith("too-deep") for p in created)


def test_file_integrity_baseline_survives_a_restart(any_build, tmp_path):
    """On the real root the baseline is kept in Agent_StateDirectory: a change
    made while the agent was down is reported by the next run."""
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "passwd").write_text("root:x:0:0\n")
    (watched / "gone").write_text("x")
    cfg = write_config(tmp_path, {"FileIntegrity_Paths": str(watched), "Agent_StateDirectory": str(tmp_path / "state"),
                                  "Process_Disabled": True, "NetworkActivity_Disabled": True,
                                  "Baseline_Disabled": True})

    def changes():
        out = run_agent(any_build, "--once", "--config", cfg).stdout
        return {(p["Path"], p["Change"]) for p in payload(out, "FileIntegrity")}

    assert changes() == set()  # the first run takes the baseline
    (watched / "passwd").write_text("root:x:0:0\nevil:x:0:0\n")
    (watched / "gone").unlink()
    assert changes() == {(f"{watched}/passwd", "Modified"), (f"{watched}/gone", "Deleted")}
    assert changes() == set()  # reported once
    saved = tmp_path / "state" / "file-integrity.baseline"
    lines = saved.read_text().splitlines()
    lines[2] = "zz" + lines[2]  # after the header and the settings line
    saved.write_text("\n".join(lines) + "\n")
    proc = run_agent(any_build, "--once", "--config", cfg)
    assert "damaged file integrity baseline" in proc.stderr and payload(proc.stdout, "FileIntegrity") == []
