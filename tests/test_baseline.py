"""The baseline collector: CIS-based posture checks run on snapshot trees.

tests/fixtures/baseline-hardened is a device on which every built-in check
passes; tests/fixtures/baseline-weak breaks every one of them. Git keeps no
modes or owners, so each tree's MODES file is applied to a copy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import FIXTURES, events, run_agent

OPTIONS = {"AGENT_COLLECTOR_BASELINE": True}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the fixture trees need files owned by other users (chown)")

# Every built-in check, in table order. The weak tree is built to break each
# of them, so this is also the list of ids expected to fail there.
ALL_CHECKS = [
    "DIOT-MOD-001", "DIOT-MOD-002", "DIOT-MOD-003", "DIOT-MOD-004", "DIOT-MOD-005", "DIOT-MOD-006", "DIOT-MOD-007",
    "DIOT-MOD-008", "DIOT-MOD-009",
    "DIOT-MNT-001", "DIOT-MNT-002", "DIOT-MNT-003", "DIOT-MNT-004", "DIOT-MNT-005", "DIOT-MNT-006", "DIOT-MNT-007",
    "DIOT-MNT-008", "DIOT-MNT-009",
    "DIOT-KRN-001", "DIOT-KRN-002", "DIOT-KRN-003", "DIOT-KRN-004", "DIOT-KRN-005", "DIOT-KRN-006", "DIOT-KRN-007",
    "DIOT-KRN-008", "DIOT-KRN-009", "DIOT-KRN-010", "DIOT-KRN-011", "DIOT-KRN-012", "DIOT-KRN-013",
    "DIOT-NET-001", "DIOT-NET-002", "DIOT-NET-003", "DIOT-NET-004", "DIOT-NET-005", "DIOT-NET-006", "DIOT-NET-007",
    "DIOT-NET-008", "DIOT-NET-009", "DIOT-NET-010", "DIOT-NET-011", "DIOT-NET-012", "DIOT-NET-013", "DIOT-NET-014",
    "DIOT-NET-015", "DIOT-NET-016", "DIOT-NET-017", "DIOT-NET-018", "DIOT-NET-019", "DIOT-NET-020", "DIOT-NET-021",
    "DIOT-NET-022", "DIOT-NET-023",
    "DIOT-FW-001", "DIOT-FW-002", "DIOT-FW-003", "DIOT-FW-004", "DIOT-FW-005", "DIOT-FW-006", "DIOT-FW-007",
    "DIOT-FW-008", "DIOT-FW-009",
    "DIOT-SVC-001", "DIOT-SVC-002", "DIOT-SVC-003", "DIOT-SVC-004", "DIOT-SVC-005", "DIOT-SVC-006", "DIOT-SVC-007",
    "DIOT-SVC-008", "DIOT-SVC-009", "DIOT-SVC-010", "DIOT-SVC-011", "DIOT-SVC-012", "DIOT-SVC-013", "DIOT-SVC-014",
    "DIOT-SVC-015", "DIOT-SVC-016", "DIOT-SVC-017",
    "DIOT-SSH-001", "DIOT-SSH-002", "DIOT-SSH-003", "DIOT-SSH-004", "DIOT-SSH-005", "DIOT-SSH-006", "DIOT-SSH-007",
    "DIOT-SSH-008", "DIOT-SSH-009", "DIOT-SSH-010", "DIOT-SSH-011", "DIOT-SSH-012", "DIOT-SSH-013", "DIOT-SSH-014",
    "DIOT-SSH-015", "DIOT-SSH-016", "DIOT-SSH-017", "DIOT-SSH-018", "DIOT-SSH-019", "DIOT-SSH-020", "DIOT-SSH-021",
    "DIOT-SSH-022",
    "DIOT-ACC-001", "DIOT-ACC-002", "DIOT-ACC-003", "DIOT-ACC-004", "DIOT-ACC-005", "DIOT-ACC-006", "DIOT-ACC-007",
    "DIOT-ACC-008", "DIOT-ACC-009", "DIOT-ACC-010", "DIOT-ACC-011", "DIOT-ACC-012", "DIOT-ACC-013", "DIOT-ACC-014",
    "DIOT-ACC-015", "DIOT-ACC-016", "DIOT-ACC-017", "DIOT-ACC-018", "DIOT-ACC-019", "DIOT-ACC-020", "DIOT-ACC-021",
    "DIOT-ACC-022", "DIOT-ACC-023",
    "DIOT-PERM-001", "DIOT-PERM-002", "DIOT-PERM-003", "DIOT-PERM-004", "DIOT-PERM-005", "DIOT-PERM-006",
    "DIOT-PERM-007", "DIOT-PERM-008", "DIOT-PERM-009", "DIOT-PERM-010", "DIOT-PERM-011", "DIOT-PERM-012",
    "DIOT-PERM-013",
    "DIOT-LOG-001", "DIOT-LOG-002",
    "DIOT-CRON-001", "DIOT-CRON-002", "DIOT-CRON-003", "DIOT-CRON-004", "DIOT-CRON-005", "DIOT-CRON-006",
    "DIOT-CRON-007",
]
WEAK_FAILS = set(ALL_CHECKS)


def prepare(name: str, dst: Path) -> Path:
    """Copy a fixture tree and give its files the modes and owners in MODES."""
    tree = dst / name
    shutil.copytree(FIXTURES / name, tree, symlinks=True)
    for dirpath, _dirs, files in os.walk(tree):
        os.chmod(dirpath, 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    modes = tree / "MODES"
    for line in modes.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        path, mode, *owner = line.split()
        if owner:
            uid, gid = owner[0].split(":")
            os.chown(tree / path, int(uid), int(gid))
        os.chmod(tree / path, int(mode, 8))
    modes.unlink()
    return tree


def write_config(tmp_path: Path, settings: dict) -> Path:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(settings))
    os.chmod(cfg, 0o600)
    return cfg


def baseline(build, root: Path | None, config: Path | None = None, check: bool = True):
    args = ["--once"]
    if root is not None:
        args += ["--root", str(root)]
    if config is not None:
        args += ["--config", str(config)]
    proc = run_agent(build, *args, check=check)
    entries = [p for e in events(proc.stdout, "Baseline") for p in e["Payload"]]
    return proc, entries


def baseline_log(proc) -> List[str]:
    """The baseline collector's own log lines (other collectors may log too)."""
    return [line for line in proc.stderr.splitlines() if ": baseline: " in line]


def by_id(entries: List[dict]) -> Dict[str, dict]:
    return {e["Id"]: e for e in entries}


@pytest.fixture(scope="module")
def build(agent_factory):
    return agent_factory(OPTIONS)


@needs_root
def test_every_check_passes_on_the_hardened_tree(build, tmp_path):
    _, entries = baseline(build, prepare("baseline-hardened", tmp_path))
    results = {e["Id"]: e["Result"] for e in entries}
    assert list(results) == ALL_CHECKS
    assert {i: r for i, r in results.items() if r != "Pass"} == {}
    for e in entries:
        assert e["Severity"] in ("Informational", "Low", "Medium", "High", "Critical")
        assert e["Description"] and e["Remediation"] and e["Group"]


@needs_root
def test_weak_tree_fails_every_check_it_breaks(build, tmp_path):
    _, entries = baseline(build, prepare("baseline-weak", tmp_path))
    failed = {e["Id"] for e in entries if e["Result"] == "Fail"}
    assert failed == WEAK_FAILS
    got = by_id(entries)
    # a few failures say why, as an operator reading them would need
    assert got["DIOT-ACC-010"]["Evidence"]["Accounts"][:2] == ["root", "admin"]
    assert got["DIOT-SVC-003"]["Evidence"]["Processes"][0]["Name"] == "tftpd"  # "busybox tftpd"
    assert got["DIOT-FW-008"]["Evidence"]["PortsWithoutRule"][:3] == [22, 23, 2323]
    assert got["DIOT-PERM-013"]["Evidence"]["Paths"] == ["/tmp/.x"]
    assert got["DIOT-PERM-011"]["Evidence"]["Paths"] == ["/opt/orphan.bin"]
    assert got["DIOT-SSH-009"]["Reason"] == "PermitRootLogin is yes, expected = no"
    assert got["DIOT-NET-001"]["CisId"] == "3.1.1"


def test_missing_inputs_skip_with_a_reason_never_fail(build, tmp_path):
    _, entries = baseline(build, tmp_path)
    assert [e["Id"] for e in entries] == ALL_CHECKS
    for e in entries:
        assert e["Result"] == "Skip", e
        assert e["Reason"]


def test_real_machine_has_no_error_result(build):
    proc, entries = baseline(build, None)
    assert len(entries) == len(ALL_CHECKS)
    assert [e for e in entries if e["Result"] == "Error"] == []
    assert baseline_log(proc) == []


@needs_root
def test_sshd_takes_first_value_follows_include_and_stops_at_match(build, tmp_path):
    tree = prepare("baseline-hardened", tmp_path)
    ssh = tree / "etc" / "ssh"
    (ssh / "sshd_config.d" / "00-first.conf").write_text("PermitRootLogin yes\n")
    _, entries = baseline(build, tree)
    got = by_id(entries)
    assert got["DIOT-SSH-009"]["Result"] == "Fail"  # the Include comes first: its value wins
    assert got["DIOT-SSH-017"]["Evidence"]["Value"] == "2"  # from 10-device.conf, not the Match block


@needs_root
def test_firewall_from_an_nft_ruleset(build, tmp_path):
    tree = prepare("baseline-weak", tmp_path)
    fw = tree / "var" / "lib" / "defender-iot" / "firewall"
    for f in fw.iterdir():
        f.unlink()
    (fw / "nft-ruleset.txt").write_text(
        "table inet filter {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy drop;\n"
        '\t\tiif "lo" accept\n'
        "\t\tip saddr 127.0.0.0/8 drop\n"
        "\t\tct state established,related accept\n"
        "\t\ttcp dport { 21, 22, 23, 111, 512, 513, 2323, 5555 } accept\n"
        "\t}\n"
        "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n"
        "\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n"
        "}\n"
    )
    _, entries = baseline(build, tree)
    got = {e["Id"]: e["Result"] for e in entries if e["Group"] == "Firewall"}
    assert got == {
        "DIOT-FW-001": "Pass", "DIOT-FW-002": "Pass", "DIOT-FW-003": "Pass", "DIOT-FW-004": "Fail",
        "DIOT-FW-005": "Pass", "DIOT-FW-006": "Pass", "DIOT-FW-007": "Pass", "DIOT-FW-008": "Fail",
        "DIOT-FW-009": "Pass",
    }
    port7 = by_id(entries)["DIOT-FW-008"]["Evidence"]["PortsWithoutRule"]
    assert port7 == [7]
    # an IPv4-only table does not make IPv6 input drop
    nft = fw / "nft-ruleset.txt"
    nft.write_text(nft.read_text().replace("table inet filter", "table ip filter"))
    _, entries = baseline(build, tree)
    got = by_id(entries)
    assert got["DIOT-FW-002"]["Result"] == "Pass" and got["DIOT-FW-009"]["Result"] == "Fail"
    # ... nor does an inet table beside it that has no drop policy: the
    # policy line belongs to the ip table
    inet = "table inet other {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t}\n}\n"
    nft.write_text(nft.read_text() + inet)
    _, entries = baseline(build, tree)
    got = by_id(entries)
    assert got["DIOT-FW-002"]["Result"] == "Pass" and got["DIOT-FW-009"]["Result"] == "Fail"
    # an ip6 or a bridge table's input drop does not filter IPv4 input
    for family, fw9 in (("ip6", "Pass"), ("bridge", "Fail")):
        nft.write_text(nft.read_text().replace("table ip filter", f"table {family} filter")
                       .replace("table ip6 filter", f"table {family} filter"))
        _, entries = baseline(build, tree)
        got = by_id(entries)
        assert (family, got["DIOT-FW-002"]["Result"], got["DIOT-FW-009"]["Result"]) == (family, "Fail", fw9)


POLICY = FIXTURES / "policies" / "acme-gateway.policy"


@needs_root
def test_product_policy_checks_appear_beside_the_built_in_ones(build, tmp_path):
    tree = prepare("baseline-hardened", tmp_path)
    (tree / "etc" / "acme").mkdir()
    conf = tree / "etc" / "acme" / "gateway.conf"
    conf.write_text("listen = 127.0.0.1:8080\ndebug = 0\nmax_clients = 4\n")
    cfg = write_config(tmp_path, {"Baseline_PolicyFiles": [str(POLICY)]})
    proc, entries = baseline(build, tree, cfg)
    got = by_id(entries)
    assert len(entries) == len(ALL_CHECKS) + 2
    assert got["ACME-001"]["Result"] == "Pass" and got["ACME-001"]["Group"] == "Product"
    assert got["ACME-002"]["Result"] == "Pass" and got["ACME-002"]["CisId"] == "99.1"
    assert got["ACME-002"]["Group"] == "Custom" and got["ACME-002"]["Severity"] == "Medium"
    assert baseline_log(proc) == []

    # break both
    conf.write_text("listen = 0.0.0.0:8080\ndebug = 0\nmax_clients = 4\n")
    (tree / "proc" / "300").mkdir()
    (tree / "proc" / "300" / "comm").write_text("acme-factoryd\n")
    _, entries = baseline(build, tree, cfg)
    got = by_id(entries)
    assert got["ACME-001"]["Result"] == "Fail" and got["ACME-002"]["Result"] == "Fail"

    conf.write_text("listen = 127.0.0.1:8080\ndebug = 0\nmax_clients = 4\n")
    (tree / "etc" / "acme" / "factory-mode").write_text("")
    _, entries = baseline(build, tree, cfg)
    assert by_id(entries)["ACME-002"]["Result"] == "Fail"

    # an input the check reads is missing: Skip, not Fail
    shutil.rmtree(tree / "etc" / "acme")
    _, entries = baseline(build, tree, cfg)
    got = by_id(entries)
    assert got["ACME-002"]["Result"] == "Skip" and "/etc/acme/gateway.conf" in got["ACME-002"]["Reason"]


@pytest.mark.parametrize(
    "text, line, field, expected",
    [
        ("check: X-1\ndescription: d\nseverity: High\nrule: c:/usr/bin/id\n", 4, "rule", "command rules c: are not supported"),
        ("check: X-1\ndescription: d\nseverity: Urgent\nrule: f:/etc/x\n", 3, "severity", "one of Informational"),
        ("check: X-1\nseverity: Low\nrule: f:/etc/x\n", 1, "description", "a description line"),
        ("check: X-1\ndescription: d\nseverity: Low\nrule: f:/etc/x -> n:^a (\\d+)\n", 4, "rule", "compare"),
        ("check: X-1\ndescription: d\nseverity: Low\nrule: f:/etc/x -> r:a(\n", 4, "rule", "regular expression"),
        ("description: d\n", 1, "description", "a 'check: ID' line"),
        ("check: DIOT-KRN-001\ndescription: d\nseverity: Low\nrule: f:/etc/x\n", 1, "check", "an id no other check uses"),
    ],
)
def test_malformed_policy_is_one_line_and_builtins_still_run(build, tmp_path, text, line, field, expected):
    bad = tmp_path / "bad.policy"
    bad.write_text(text)
    good = tmp_path / "good.policy"
    good.write_text("check: GOOD-1\ndescription: passwd exists\nseverity: Low\nrule: f:/etc/passwd\n")
    cfg = write_config(tmp_path, {"Baseline_PolicyFiles": f"{bad},{good}"})
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    proc, entries = baseline(build, tree, cfg)
    lines = baseline_log(proc)
    assert len(lines) == 1, proc.stderr
    assert f"{bad}:{line}: field '{field}': expected" in lines[0] and expected in lines[0]
    ids = [e["Id"] for e in entries]
    assert ids[: len(ALL_CHECKS)] == ALL_CHECKS
    assert ids[len(ALL_CHECKS):] == ["GOOD-1"]
    assert by_id(entries)["GOOD-1"]["Result"] == "Pass"


def test_unreadable_policy_file_is_one_line(build, tmp_path):
    missing = tmp_path / "missing.policy"
    cfg = write_config(tmp_path, {"Baseline_PolicyFiles": [str(missing)]})
    proc, entries = baseline(build, tmp_path, cfg)
    assert baseline_log(proc) == [
        f"defender-iot-agent: warning: baseline: {missing}: expected a readable regular file of at most 1 MB "
        "(No such file or directory) (its checks are skipped)"
    ]
    assert [e["Id"] for e in entries] == ALL_CHECKS


def test_groups_checks_disabled_and_severity_overrides(build, tmp_path):
    cfg = write_config(
        tmp_path,
        {
            "Baseline_GroupsDisabled": "Firewall,SSH",
            "Baseline_ChecksDisabled": ["DIOT-NET-001", "3.2.8"],  # an id and a CIS id (DIOT-NET-021)
            "Baseline_SeverityOverrides": "DIOT-KRN-001=Low,DIOT-SVC-011=Informational",
        },
    )
    _, entries = baseline(build, tmp_path, cfg)
    got = by_id(entries)
    assert not [i for i in got if i.startswith(("DIOT-FW-", "DIOT-SSH-"))]
    assert "DIOT-NET-001" not in got and "DIOT-NET-021" not in got and "DIOT-NET-002" in got
    assert got["DIOT-KRN-001"]["Severity"] == "Low" and got["DIOT-SVC-011"]["Severity"] == "Informational"
    assert got["DIOT-KRN-002"]["Severity"] == "Medium"

    cfg = write_config(tmp_path, {"Baseline_SeverityOverrides": {"DIOT-KRN-002": "Critical"}})
    _, entries = baseline(build, tmp_path, cfg)
    assert by_id(entries)["DIOT-KRN-002"]["Severity"] == "Critical"


@pytest.mark.parametrize(
    "key, value",
    [
        ("Baseline_SeverityOverrides", "DIOT-KRN-001=Severe"),
        ("Baseline_SeverityOverrides", {"DIOT-KRN-001": 3}),
        ("Baseline_PolicyFiles", "relative/acme.policy"),
    ],
)
def test_bad_baseline_setting_is_refused_naming_the_key(build, tmp_path, key, value):
    cfg = write_config(tmp_path, {key: value})
    proc = run_agent(build, "--config", str(cfg), "--once", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "expected" in lines[0]


def test_retired_agent_trigger_file_reports_the_test_check(build, tmp_path):
    (tmp_path / "tmp").mkdir()
    _, entries = baseline(build, tmp_path)
    assert "IoT_CISBenchmarks_DIoTTest" not in by_id(entries)
    (tmp_path / "tmp" / "DefenderForIoTOSBaselineTrigger.txt").write_text("")
    _, entries = baseline(build, tmp_path)
    test = by_id(entries)["IoT_CISBenchmarks_DIoTTest"]
    assert test["Result"] == "Fail" and test["Group"] == "Test"


@needs_root
def test_dropbear_options_from_its_command_line(build, tmp_path):
    tree = prepare("baseline-weak", tmp_path)
    (tree / "etc" / "default" / "dropbear").unlink()
    (tree / "proc" / "210" / "cmdline").write_bytes(b"/usr/sbin/dropbear\0-p\0" b"2222\0-wgjk\0")
    _, entries = baseline(build, tree)
    got = {e["Id"]: e["Result"] for e in entries if e["Id"] in ("DIOT-SSH-019", "DIOT-SSH-020", "DIOT-SSH-021", "DIOT-SSH-022")}
    assert got == dict.fromkeys(got, "Pass") and len(got) == 4


@needs_root
def test_default_credential_results_survive_a_restart_without_copying_hashes(build, tmp_path):
    tree = prepare("baseline-weak", tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = write_config(tmp_path, {"Agent_StateDirectory": str(state)})
    for _ in range(2):
        _, entries = baseline(build, tree, cfg)
        assert by_id(entries)["DIOT-ACC-010"]["Evidence"]["Accounts"][:2] == ["root", "admin"]
    cache = state / "baseline-credentials"
    assert cache.stat().st_mode & 0o777 == 0o600
    shadow = (tree / "etc" / "shadow").read_text()
    assert not [h for h in shadow.split(":") if h.startswith("$") and h in cache.read_text()]
    # a new password is a new hash: checked again, not taken from the cache
    hardened_root = (FIXTURES / "baseline-hardened" / "etc" / "shadow").read_text().splitlines()[0]
    lines = shadow.splitlines()
    (tree / "etc" / "shadow").write_text("\n".join([hardened_root] + lines[1:]) + "\n")
    _, entries = baseline(build, tree, cfg)
    assert by_id(entries)["DIOT-ACC-010"]["Evidence"]["Accounts"] == ["admin", "admin"]


NFT_RULESET = """table inet filter {
  chain input {
    type filter hook input priority 0; policy drop;
    iif lo accept
    ip saddr 127.0.0.0/8 drop
    ct state established,related accept
    tcp dport { 22, 8080 } accept
  }
  chain forward { type filter hook forward priority 0; policy drop; }
  chain output { type filter hook output priority 0; policy accept; }
}
"""

LISTEN = "import socket, sys, time\n" + "\n".join(
    f"s{p} = socket.socket(); s{p}.bind(('0.0.0.0', {p})); s{p}.listen()" for p in (8080, 9999)
) + "\nprint('ready', flush=True)\ntime.sleep(60)\n"


@needs_root
@pytest.mark.skipif(not (shutil.which("unshare") and shutil.which("nft")), reason="needs unshare and nft (nftables)")
def test_live_nft_rules_in_a_network_namespace(build, tmp_path):
    """The agent runs the real `nft list ruleset` (and iptables-save) in a
    network namespace of its own: the machine's firewall is not touched."""
    rules = tmp_path / "rules.nft"
    rules.write_text(NFT_RULESET)
    script = (
        f"nft -f {rules} || exit 99\n"
        f"python3 -c \"$LISTEN\" > {tmp_path}/ready 2>&1 & listener=$!\n"
        f"for i in $(seq 100); do [ -s {tmp_path}/ready ] && break; sleep 0.1; done\n"
        f"{build.binary} --once\n"
        "kill $listener\n"
    )
    proc = subprocess.run(["unshare", "-n", "sh", "-c", script], env={**os.environ, "LISTEN": LISTEN},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if proc.returncode == 99 or "Operation not permitted" in proc.stderr:
        pytest.skip(f"cannot load nftables rules here: {proc.stderr.strip()[:200]}")
    got = {e["Id"]: e for ev in events(proc.stdout, "Baseline") for e in ev["Payload"] if e["Group"] == "Firewall"}
    assert {i: e["Result"] for i, e in got.items()} == {
        "DIOT-FW-001": "Pass", "DIOT-FW-002": "Pass", "DIOT-FW-003": "Pass", "DIOT-FW-004": "Fail",
        "DIOT-FW-005": "Pass", "DIOT-FW-006": "Pass", "DIOT-FW-007": "Pass", "DIOT-FW-008": "Fail",
        "DIOT-FW-009": "Pass",
    }
    assert got["DIOT-FW-008"]["Evidence"]["PortsWithoutRule"] == [9999]


@needs_root
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv (util-linux)")
def test_unreadable_shadow_is_an_error_not_a_pass(build, tmp_path):
    """An agent run without the right to read /etc/shadow cannot vouch for
    the passwords: Error with the reason, not Pass."""
    # pytest's tmp_path is under a 0700 directory that nobody cannot enter
    top = Path(tempfile.mkdtemp(prefix="baseline-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        tree = prepare("baseline-weak", top)
        os.chmod(tree / "etc" / "shadow", 0o600)
        proc = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                               str(build.binary), "--once", "--root", str(tree)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        shutil.rmtree(top)
    got = {e["Id"]: e for ev in events(proc.stdout, "Baseline") for e in ev["Payload"]}
    for check in ("DIOT-ACC-001", "DIOT-ACC-010"):
        assert got[check]["Result"] == "Error"
        assert got[check]["Reason"] == "cannot read /etc/shadow: Permission denied"


def test_policy_files_are_reloaded_with_the_configuration(build, tmp_path):
    """SIGHUP rereads the config; the policy files it names are parsed again."""
    out, cfg = tmp_path / "messages.jsonl", tmp_path / "config.json"
    first, second = tmp_path / "first.policy", tmp_path / "second.policy"
    first.write_text("check: FIRST-1\ndescription: d\nseverity: Low\nrule: f:/etc/passwd\n")
    second.write_text("check: SECOND-1\ndescription: d\nseverity: Low\nrule: not f:/etc/passwd\n")

    def configure(policy: Path) -> None:
        new = cfg.with_suffix(".new")
        new.write_text(json.dumps({"Agent_Transport": "local", "Local_Path": str(out),
                                   "Agent_StateDirectory": str(tmp_path / "state"),
                                   "CollectorsCore_PriorityIntervals": "0.02,0.02,0.02",
                                   "Baseline_PolicyFiles": [str(policy)]}))
        os.chmod(new, 0o600)
        new.replace(cfg)

    def custom_ids() -> set:
        text = out.read_text() if out.exists() else ""
        return {p["Id"] for line in text.splitlines() if line.strip()
                for e in json.loads(line)["Events"] if e["Name"] == "Baseline"
                for p in e["Payload"] if not p["Id"].startswith("DIOT-")}

    def wait_for_id(check: str) -> None:
        deadline = time.monotonic() + 30
        while check not in custom_ids():
            assert time.monotonic() < deadline, f"no {check} in {custom_ids()}"
            time.sleep(0.2)

    configure(first)
    proc = subprocess.Popen([str(build.binary), "--config", str(cfg), "--root", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_id("FIRST-1")
        configure(second)
        proc.send_signal(signal.SIGHUP)
        wait_for_id("SECOND-1")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@needs_root
def test_after_dropping_root_the_declared_capability_still_reads_shadow(build, tmp_path):
    """Agent_RunAsUser keeps CAP_DAC_READ_SEARCH for the baseline: /etc/shadow
    (0600 root) is still judged, not reported as unreadable."""
    top = Path(tempfile.mkdtemp(prefix="baseline-", dir="/tmp"))
    try:
        os.chmod(top, 0o755)
        tree = prepare("baseline-weak", top)
        os.chmod(tree / "etc" / "shadow", 0o600)
        out = top / "out"
        out.mkdir(mode=0o777)
        os.chmod(out, 0o777)
        cfg = write_config(top, {"Agent_RunAsUser": "nobody", "Agent_Transport": "local",
                                 "Local_Path": str(out / "messages.jsonl"),
                                 "Agent_StateDirectory": str(top / "state"),
                                 "CollectorsCore_PriorityIntervals": "0.02,0.02,0.02"})
        proc = subprocess.Popen([str(build.binary), "--config", str(cfg), "--root", str(tree)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            entries: Dict[str, dict] = {}
            while not entries:
                assert time.monotonic() < deadline and proc.poll() is None, "no Baseline message"
                time.sleep(0.2)
                path = out / "messages.jsonl"
                text = path.read_text() if path.exists() else ""
                entries = {p["Id"]: p for ev in events(text, "Baseline") for p in ev["Payload"]}
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        assert "running as nobody" in proc.stderr.read()
        assert entries["DIOT-ACC-001"]["Result"] == "Fail" and entries["DIOT-ACC-010"]["Result"] == "Fail"
        assert entries["DIOT-ACC-010"]["Evidence"]["Accounts"][:2] == ["root", "admin"]
    finally:
        shutil.rmtree(top)
