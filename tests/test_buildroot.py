"""The BR2_EXTERNAL tree, checked offline: its Kconfig with kconfiglib (the
symbols it uses from Buildroot proper stubbed, so toolchain limits can be
switched), the defconfigs resolved, the .mk and .hash against the agent's
//feature: lines and the repository, and the rules of Buildroot's
utils/check-package that apply to it. (Buildroot itself is not in CI: see
docs/integration.md for the releases the tree was checked with.)"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import kconfiglib
import pytest

from conftest import REPO
from defender_iot.features import Feature, load_features
from defender_iot.knobs import Knob, load_knobs

EXT = REPO / "buildroot-package"
PKG = EXT / "package" / "defender-iot-micro-agent"
MK = PKG / "defender-iot-micro-agent.mk"
MAIN = "BR2_PACKAGE_DEFENDER_IOT_MICRO_AGENT"
RECIPE = REPO / "meta-defender-iot" / "recipes-security" / "defender-iot" / "defender-iot-micro-agent_git.bb"

# pkg-config module (a feature's //libs: line) -> the Buildroot package providing it.
BR_PROVIDER = {"libmosquitto": "BR2_PACKAGE_MOSQUITTO", "libssl": "BR2_PACKAGE_OPENSSL",
               "libcrypto": "BR2_PACKAGE_OPENSSL", "libxcrypt": "BR2_PACKAGE_LIBXCRYPT"}

# Buildroot's own symbols as a glibc toolchain with shared libraries sets them.
TOOLCHAIN = {"BR2_TOOLCHAIN_GCC_AT_LEAST_4_9": "y", "BR2_TOOLCHAIN_USES_GLIBC": "y", "BR2_USE_MMU": "y",
             "BR2_STATIC_LIBS": "n"}


def sub_option(f: Feature) -> str:
    return f"{MAIN}_{f.kind}_{f.name}".upper()


def external_name() -> str:
    m = re.search(r"^name:\s*(\w+)\s*$", (EXT / "external.desc").read_text(), re.M)
    assert m, "external.desc has no name"
    return m.group(1)


def kconfig(tmp_path: Path, **toolchain: str) -> kconfiglib.Kconfig:
    """The tree's Config.in under a stand-in for Buildroot's: toolchain and
    arch symbols fixed (TOOLCHAIN, overridable), package symbols n unless
    something selects them."""
    os.environ[f"BR2_EXTERNAL_{external_name()}_PATH"] = str(EXT)
    os.environ.setdefault("CONFIG_", "")
    top = EXT / "Config.in"
    probe = kconfiglib.Kconfig(str(top), warn=False)
    values = dict(TOOLCHAIN, **toolchain)
    stubs = sorted(s.name for s in probe.syms.values() if not s.nodes)
    text = "".join(f"config {s}\n\tbool\n\tdefault {values.get(s, 'n')}\n\n" for s in stubs)
    (tmp_path / "Kconfig").write_text(text + f'source "{top}"\n')
    return kconfiglib.Kconfig(str(tmp_path / "Kconfig"), warn=False)


def visible_comments(kconf: kconfiglib.Kconfig) -> List[str]:
    return [n.prompt[0] for n in kconf.node_iter() if n.item == kconfiglib.COMMENT and kconfiglib.expr_value(n.dep)]


def load_fragment(kconf: kconfiglib.Kconfig, tmp_path: Path, text: str) -> None:
    path = tmp_path / "fragment.config"
    path.write_text(text)
    kconf.load_config(str(path))


# ---- the tree's three files ----------------------------------------------

def test_external_tree_layout():
    assert external_name() == "DEFENDER_IOT"
    assert "$(BR2_EXTERNAL_DEFENDER_IOT_PATH)/package/*/*.mk" in (EXT / "external.mk").read_text()
    assert 'source "$BR2_EXTERNAL_DEFENDER_IOT_PATH/package/defender-iot-micro-agent/Config.in"' in \
        (EXT / "Config.in").read_text()
    for name in ("Config.in", "defender-iot-micro-agent.mk", "defender-iot-micro-agent.hash", "S50defender-iot-agent"):
        assert (PKG / name).is_file(), name


# ---- Config.in against the agent's features -------------------------------

def test_every_feature_has_a_sub_option(tmp_path):
    kconf = kconfig(tmp_path)
    main = kconf.syms[MAIN]
    features = list(load_features())
    for f in features:
        sym = kconf.syms.get(sub_option(f))
        assert sym is not None and sym.nodes, f"{f.source.name}: no {sub_option(f)} in {PKG / 'Config.in'}"
        assert sym.type == kconfiglib.BOOL
        assert main in kconfiglib.expr_items(sym.direct_dep), f"{sym.name} is not inside 'if {MAIN}'"
        default = sym.defaults[0][0] if sym.defaults else kconf.n
        assert (default is kconf.y) == f.default, f"{sym.name}: default must follow '//feature: ... {'ON' if f.default else 'OFF'}'"
        selects = {s.name for s, _ in sym.selects}
        wanted = {f"{MAIN}_COLLECTOR_{r}".upper() for r in f.requires} | {BR_PROVIDER[lib] for lib in f.libs}
        assert selects == wanted, f"{sym.name} selects {sorted(selects)}, needs {sorted(wanted)}"
    known = {sub_option(f) for f in features} | {k.br_symbol for k in load_knobs()} | {MAIN, f"{MAIN}_CONFIG_FILE"}
    extra = {s.name for s in kconf.unique_defined_syms if s.name.startswith(MAIN)} - known
    assert not extra, f"sub-options without a feature in agent/src: {sorted(extra)}"
    assert kconf.syms[f"{MAIN}_CONFIG_FILE"].type == kconfiglib.STRING
    assert "BR2_PACKAGE_CJSON" in {s.name for s, _ in main.selects}


def unwired_build_options(kconf: kconfiglib.Kconfig, knobs: List[Knob]) -> List[str]:
    """What Config.in and the .mk lack for each build option of
    agent/CMakeLists.txt that is not a feature: a bool (ON/OFF options) or a
    string sub-option, passed in CONF_OPTS."""
    missing = []
    mk = MK.read_text()
    for k in knobs:
        where = f"{k.source.name}:{k.line} declares {k.option}; add"
        sym = kconf.syms.get(k.br_symbol)
        want = kconfiglib.BOOL if k.type == "BOOL" else kconfiglib.STRING
        default = k.packaged_default
        if sym is None or not sym.nodes or sym.type != want or MAIN not in [s.name for s in
                                                                               kconfiglib.expr_items(sym.direct_dep)]:
            missing.append(f"{where} to Config.in, inside 'if {MAIN}': config {k.br_symbol} / "
                           f"{'bool' if k.type == 'BOOL' else 'string'} ..."
                           + (" / default y" if default is True else f' / default "{default}"' if default else ""))
        elif sym.str_value != ("y" if default is True else "n" if default is False else default):
            missing.append(f"{k.source.name}:{k.line} declares {k.option}; {k.br_symbol} must default to "
                           f"{k.cmake(default)}, as the recipe does")
        if k.type == "BOOL":
            line = re.compile(rf"-D{k.option}=\$\(if [^,]*\$\({k.br_symbol}\)[^,]*,ON,OFF\)")
            text = f"-D{k.option}=$(if $({k.br_symbol}),ON,OFF)"
        else:
            text = f"-D{k.option}=$(call qstrip,$({k.br_symbol}))"
            line = re.compile(re.escape(text))
        if not line.search(mk):
            missing.append(f"{where} to DEFENDER_IOT_MICRO_AGENT_CONF_OPTS in {MK.name}: {text}")
    return missing


def test_every_build_option_is_wired(tmp_path):
    kconf = kconfig(tmp_path)
    kconf.syms[MAIN].set_value("y")
    knobs = load_knobs()
    assert {"AGENT_REPLAY", "AGENT_CONFIG_REFERENCE", "AGENT_LTO", "AGENT_MAX_PAGE_SIZE"} <= {k.option for k in knobs}
    missing = unwired_build_options(kconf, knobs)
    assert not missing, "\n".join(missing)
    # LTO: the product's choice or Buildroot's global one
    assert f"-DAGENT_LTO=$(if $(BR2_ENABLE_LTO)$({MAIN}_LTO),ON,OFF)" in MK.read_text()


def test_a_new_build_option_is_reported_with_the_line_to_add(tmp_path):
    agent = tmp_path / "agent"
    (agent / "cmake").mkdir(parents=True)
    (agent / "CMakeLists.txt").write_text((REPO / "agent" / "CMakeLists.txt").read_text()
                                          + '\noption(AGENT_PRIVACY_MASKING "Privacy masking" ON)\n')
    kconf = kconfig(tmp_path)
    kconf.syms[MAIN].set_value("y")
    missing = unwired_build_options(kconf, [k for k in load_knobs(agent) if k.option == "AGENT_PRIVACY_MASKING"])
    assert [m.split("; ", 1)[1] for m in missing] == [
        f"add to Config.in, inside 'if {MAIN}': config {MAIN}_PRIVACY_MASKING / bool ... / default y",
        f"add to DEFENDER_IOT_MICRO_AGENT_CONF_OPTS in {MK.name}: "
        f"-DAGENT_PRIVACY_MASKING=$(if $({MAIN}_PRIVACY_MASKING),ON,OFF)",
    ]


def test_a_detector_brings_its_collectors(tmp_path):
    kconf = kconfig(tmp_path)
    load_fragment(kconf, tmp_path, f"{MAIN}=y\n# {MAIN}_COLLECTOR_LOGIN is not set\n{MAIN}_DETECTOR_BRUTE_FORCE=y\n")
    assert kconf.syms[f"{MAIN}_COLLECTOR_LOGIN"].str_value == "y"
    load_fragment(kconf, tmp_path, f"{MAIN}=y\n{MAIN}_TRANSPORT_IOTHUB=y\n")
    assert kconf.syms["BR2_PACKAGE_MOSQUITTO"].str_value == "y" and kconf.syms["BR2_PACKAGE_OPENSSL"].str_value == "y"


@pytest.mark.parametrize("limit, hidden, comment", [
    ({"BR2_TOOLCHAIN_USES_GLIBC": "n"}, ["COLLECTOR_BASELINE"], "baseline needs a toolchain w/ glibc"),
    ({"BR2_STATIC_LIBS": "y"}, ["TRANSPORT_IOTHUB", "TRANSPORT_MQTT"],
     "IoT Hub and MQTT transports need a toolchain w/ dynamic library"),
    ({"BR2_TOOLCHAIN_GCC_AT_LEAST_4_9": "n"}, [""], "defender-iot-micro-agent needs a toolchain w/ gcc >= 4.9"),
])
def test_toolchain_limits_hide_options_and_say_why(tmp_path, limit, hidden, comment):
    assert comment not in visible_comments(kconfig(tmp_path))
    kconf = kconfig(tmp_path, **limit)
    load_fragment(kconf, tmp_path, f"{MAIN}=y\n" + "".join(f"{MAIN}_{h}=y\n" for h in hidden if h))
    for h in hidden:
        name = f"{MAIN}_{h}" if h else MAIN
        assert kconf.syms[name].str_value == "n", f"{name} available under {limit}"
    assert comment in visible_comments(kconf)


@pytest.mark.parametrize("defconfig", sorted(p.name for p in (EXT / "configs").glob("*_defconfig")))
def test_defconfig_resolves_to_the_agent_with_every_default_feature(tmp_path, defconfig):
    assert defconfig in ("defender_iot_qemu_x86_64_defconfig", "defender_iot_qemu_aarch64_virt_defconfig")
    kconf = kconfig(tmp_path)
    text = (EXT / "configs" / defconfig).read_text()
    kconf.load_config(str(EXT / "configs" / defconfig))
    assert kconf.syms[MAIN].str_value == "y"
    for f in load_features():
        assert kconf.syms[sub_option(f)].str_value == ("y" if f.default else "n"), sub_option(f)
    values = {k.br_symbol: kconf.syms[k.br_symbol].str_value for k in load_knobs()}
    assert values[f"{MAIN}_REPLAY"] == "y" and values[f"{MAIN}_CONFIG_REFERENCE"] == "y"
    assert values[f"{MAIN}_LTO"] == "n" and values[f"{MAIN}_MAX_PAGE_SIZE"] == ""
    for line in ("BR2_TOOLCHAIN_BUILDROOT_GLIBC=y", "BR2_PACKAGE_DROPBEAR=y", "BR2_PACKAGE_IPTABLES=y",
                 "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y"):
        assert line in text.splitlines(), f"{defconfig}: {line}"
    arch = "BR2_x86_64=y" if "x86_64" in defconfig else "BR2_aarch64=y"
    assert text.splitlines()[0] == arch


# ---- the .mk and .hash -----------------------------------------------------

def mk_var(name: str) -> str:
    m = re.search(rf"^DEFENDER_IOT_MICRO_AGENT_{name} = (.*)$", MK.read_text(), re.M)
    assert m, f"{MK.name}: no DEFENDER_IOT_MICRO_AGENT_{name}"
    return m.group(1)


def test_mk_maps_every_sub_option_to_its_cmake_option():
    text = MK.read_text()
    for f in load_features():
        line = f"-D{f.option}=$(if $({sub_option(f)}),ON,OFF)"
        assert line in text, f"{MK.name}: missing {line}"
    assert "$(eval $(cmake-package))" in text.splitlines()[-1]
    assert mk_var("SUBDIR") == "agent"
    assert mk_var("LICENSE") == "MIT" and mk_var("LICENSE_FILES") == "LICENSE"
    assert "DEFENDER_IOT_MICRO_AGENT_OVERRIDE_SRCDIR" in text


def test_version_is_the_recipe_commit_and_exists():
    version = mk_var("VERSION")
    assert re.fullmatch(r"[0-9a-f]{40}", version)
    assert mk_var("SITE_METHOD") == "git"
    srcrev = re.search(r'^SRCREV = "([0-9a-f]{40})"$', RECIPE.read_text(), re.M).group(1)
    assert version == srcrev, "the Buildroot package and the Yocto recipe build different commits"
    assert subprocess.run(["git", "cat-file", "-e", version + "^{commit}"], cwd=REPO).returncode == 0
    show = subprocess.run(["git", "show", f"{version}:LICENSE"], cwd=REPO, capture_output=True, text=True)
    assert show.returncode == 0 and show.stdout == (REPO / "LICENSE").read_text()


def test_hash_file():
    lines = [line for line in (PKG / "defender-iot-micro-agent.hash").read_text().splitlines()
             if line and not line.startswith("#")]
    entries = {}
    for line in lines:
        m = re.fullmatch(r"sha256  ([0-9a-f]{64})  (\S+)", line)
        assert m, f"hash line must be 'sha256  <hash>  <file>': {line!r}"
        entries[m.group(2)] = m.group(1)
    assert entries["LICENSE"] == hashlib.sha256((REPO / "LICENSE").read_bytes()).hexdigest()
    assert f"defender-iot-micro-agent-{mk_var('VERSION')}-git4.tar.gz" in entries


def test_users_permissions_and_init():
    text = MK.read_text()
    users = re.search(r"define DEFENDER_IOT_MICRO_AGENT_USERS\n\t(.*)\nendef", text).group(1).split()
    assert users[:6] == ["defender-iot", "-1", "defender-iot", "-1", "*", "/var/lib/defender-iot"]
    perms = re.search(r"define DEFENDER_IOT_MICRO_AGENT_PERMISSIONS\n\t(.*)\nendef", text).group(1).split()
    assert perms[:5] == ["/var/lib/defender-iot", "d", "700", "defender-iot", "defender-iot"]
    assert "$(DEFENDER_IOT_MICRO_AGENT_PKGDIR)/S50defender-iot-agent" in text
    assert "$(TARGET_DIR)/etc/init.d/S50defender-iot-agent" in text
    assert "$(TARGET_DIR)/usr/lib/systemd/system/defender-iot-agent.service" in text


# ---- Buildroot's check-package rules that apply here -----------------------

def check_package_findings(path: Path) -> List[str]:
    """The subset of utils/check-package that this tree can trip (indent,
    trailing space, Config.in attribute and help layout, the .mk header)."""
    out: List[str] = []
    lines = path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if line != line.rstrip():
            out.append(f"{path.name}:{n}: trailing whitespace")
    if path.name == "Config.in" and path.parent == PKG:
        in_help = False
        for n, line in enumerate(lines, 1):
            if re.match(r"^(config|comment|if|endif|menu|endmenu|choice|endchoice|source)\b", line) or not line:
                in_help = in_help and not line.startswith(("config", "comment", "if", "endif"))
                continue
            if line == "\thelp":
                in_help = True
                continue
            if in_help:
                if not line.startswith("\t  ") or len(line.expandtabs()) > 72:
                    out.append(f"{path.name}:{n}: help text must be <tab><2 spaces>, 62 columns of text")
            elif not re.match(r"^\t(bool|string|depends on|select|default|help)\b", line):
                out.append(f"{path.name}:{n}: attribute must be indented by one tab")
    if path.suffix == ".mk":
        header = ["#" * 80, "#", f"# {path.stem}", "#", "#" * 80, ""]
        if lines[:6] != header:
            out.append(f"{path.name}: first lines must be Buildroot's package header")
        for n, line in enumerate(lines, 1):
            if line.startswith(" "):
                out.append(f"{path.name}:{n}: indent with tabs")
    return out


def test_check_package_rules():
    findings = []
    for path in [EXT / "Config.in", PKG / "Config.in", MK, PKG / "defender-iot-micro-agent.hash"]:
        findings += check_package_findings(path)
    assert not findings, "\n".join(findings)


def test_check_package_rules_catch_mistakes(tmp_path):
    bad = tmp_path / "Config.in"
    bad.write_text("config BR2_X\n    bool \"x\"\n\thelp\n\t  fine\n\t plain\n")
    global PKG
    saved, PKG = PKG, tmp_path
    try:
        assert len(check_package_findings(bad)) == 2
    finally:
        PKG = saved


def test_s50_script_follows_buildroot_style():
    script = PKG / "S50defender-iot-agent"
    text = script.read_text()
    daemon = re.search(r'^DAEMON="([^"]+)"$', text, re.M).group(1)
    assert script.name == f"S50{daemon}"
    assert re.search(r'^PIDFILE="/var/run/\$DAEMON\.pid"$', text, re.M)
    assert 'start-stop-daemon --start --background --make-pidfile' in text
    assert not [line for line in text.splitlines() if re.match(r"^ +\S", line)], "indent with tabs"
    assert not os.access(script, os.X_OK), "check-package: installed with $(INSTALL) -m 0755, not executable"
    proc = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def running(pid: int) -> bool:
    """Alive and not a zombie (the daemon's parent exited; whoever inherits
    it may not have reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_s50_script_starts_and_stops_a_daemon(tmp_path, agent):
    """The init script's own logic, on the host: start-stop-daemon from
    Debian (BusyBox's takes the same long options), the real agent."""
    if os.geteuid() != 0:
        pytest.skip("needs root to --chuid")
    root = tmp_path
    script = (PKG / "S50defender-iot-agent").read_text()
    config = root / "config.json"
    config.write_text('{"Agent_Transport": "local", "Local_Path": "%s", "CollectorsCore_PriorityIntervals": "5,5,5",'
                      ' "Agent_StateDirectory": "%s"}' % (root / "out.json", root / "state"))
    config.chmod(0o644)
    script = (script.replace("/usr/sbin/$DAEMON", str(agent.binary))
              .replace('PIDFILE="/var/run/$DAEMON.pid"', f'PIDFILE="{root}/agent.pid"')
              .replace('CONFIG="/etc/defender-iot/config.json"', f'CONFIG="{config}"')
              .replace('STATEDIR="/var/lib/defender-iot"', f'STATEDIR="{root}/state"')
              .replace('DAEMON_USER="defender-iot"', 'DAEMON_USER="root"')
              .replace('"/etc/default/$DAEMON"', f'"{root}/default"'))
    (root / "S50").write_text(script)

    def call(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(root / "S50"), action], capture_output=True, text=True, timeout=60)

    started = call("start")
    assert started.returncode == 0 and started.stdout.strip().endswith("OK"), started.stdout + started.stderr
    pid = int((root / "agent.pid").read_text())
    try:
        # The pid file is written by the forked child just before it execs the agent.
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{pid}/exe") != str(agent.binary) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.readlink(f"/proc/{pid}/exe") == str(agent.binary)
        # Reload once the agent has set up (its first message is out).
        while not (root / "out.json").exists() and time.monotonic() < deadline + 20:
            time.sleep(0.1)
        assert (root / "out.json").exists(), "the agent started by the script wrote no message"
        assert call("reload").returncode == 0
        assert running(pid)
    finally:
        stopped = call("stop")
    assert stopped.returncode == 0 and stopped.stdout.strip().endswith("OK"), stopped.stdout
    assert not running(pid) and not (root / "agent.pid").exists()
    assert call("bogus").returncode == 1
