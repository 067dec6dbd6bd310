"""meta-defender-iot, checked offline the way its ecosystem checks layers:
oelint-adv, the static half of yocto-check-layer, the recipe's options
against the agent's own //feature: lines, the recipe's install and ptest
code run for real on the host, the service files, and the oeqa helpers
against a real agent. (Real bitbake cannot run in CI: see docs/integration.md
for the releases it was checked with.)"""

from __future__ import annotations

import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from oelint_parser.cls_item import FlagAssignment, Function, Variable
from oelint_parser.cls_stash import Stash

from conftest import REPO
from defender_iot.features import Feature, load_features
from defender_iot.knobs import Knob, load_knobs

LAYER = REPO / "meta-defender-iot"
RECIPE = LAYER / "recipes-security" / "defender-iot" / "defender-iot-micro-agent_git.bb"
PACKAGING = REPO / "agent" / "packaging"
RELEASE = "wrynose"  # the Yocto Project LTS the layer targets

# pkg-config module (a feature's //libs: line) -> the OE recipe providing it.
OE_PROVIDER = {"libmosquitto": "mosquitto", "libssl": "openssl", "libcrypto": "openssl", "libxcrypt": "libxcrypt"}

# The target paths bitbake would use (poky defaults).
OE_PATHS = {
    "sbindir": "/usr/sbin",
    "sysconfdir": "/etc",
    "localstatedir": "/var",
    "systemd_system_unitdir": "/usr/lib/systemd/system",
    "PTEST_PATH": "/usr/lib/defender-iot-micro-agent/ptest",
    "PN": "defender-iot-micro-agent",
}


def bb_files() -> List[Path]:
    return sorted(p for ext in ("*.bb", "*.bbappend", "*.bbclass") for p in LAYER.rglob(ext))


@dataclass
class Recipe:
    vars: Dict[str, List[Variable]]
    flags: Dict[Tuple[str, str], str]
    funcs: Dict[Tuple[str, str], str]

    def value(self, name: str, sub: str = "") -> str:
        items = [v for v in self.vars.get(name, []) if v.SubItem == sub]
        assert items, f"{RECIPE.name}: {name}{':' + sub if sub else ''} is not set"
        return " ".join(" ".join(v.get_items()) for v in items)

    def packageconfig(self) -> Dict[str, List[str]]:
        """PACKAGECONFIG[x] -> its comma-separated fields."""
        return {flag: [f.strip() for f in value.split(",")]
                for (var, flag), value in self.flags.items() if var == "PACKAGECONFIG"}


def parse_recipe(path: Path = RECIPE) -> Recipe:
    stash = Stash(quiet=True)
    stash.AddFile(str(path))
    stash.Finalize()
    variables: Dict[str, List[Variable]] = {}
    for v in stash.GetItemsFor(classifier=Variable.CLASSIFIER):
        variables.setdefault(v.VarName, []).append(v)
    flags = {(f.VarName, f.Flag): f.ValueStripped.strip('"') for f in stash.GetItemsFor(classifier=FlagAssignment.CLASSIFIER)}
    funcs = {(f.FuncName, f.SubItem): f.FuncBodyRaw for f in stash.GetItemsFor(classifier=Function.CLASSIFIER)}
    return Recipe(variables, flags, funcs)


def pc_name(feature: Feature) -> str:
    return feature.name.replace("_", "-")


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return parse_recipe()


# ---- oelint-adv ---------------------------------------------------------

def test_oelint_adv_reports_nothing():
    files = bb_files()
    assert RECIPE in files and len(files) >= 3
    oelint = Path(sys.executable).parent / "oelint-adv"
    proc = subprocess.run([str(oelint), "--release", RELEASE, "--suppress", "oelint.vars.homepageping",
                           "--quiet", *map(str, files)], cwd=LAYER, capture_output=True, text=True, timeout=300)
    findings = [line for line in (proc.stdout + proc.stderr).splitlines() if re.search(r":\d+:(info|warning|error):", line)]
    assert proc.returncode == 0 and not findings, "\n".join(findings) or proc.stderr


def test_oelint_config_suppresses_only_the_network_rule():
    cfg = (LAYER / ".oelint.cfg").read_text()
    suppressed = re.findall(r"^\s+(oelint\.\S+)", cfg, re.M)
    assert suppressed == ["oelint.vars.homepageping"]
    assert re.search(rf"^release\s*=\s*{RELEASE}$", cfg, re.M)
    for path in bb_files():
        assert "nooelint" not in path.read_text(), f"{path}: inline oelint suppression"


# ---- yocto-check-layer's static checks -----------------------------------

def test_layer_conf():
    conf = (LAYER / "conf" / "layer.conf").read_text()
    assert re.search(r'^BBFILE_COLLECTIONS \+= "defender-iot"$', conf, re.M)
    assert re.search(r'^BBFILE_PATTERN_defender-iot = "\^\$\{LAYERDIR\}/"$', conf, re.M)
    compat = re.search(r'^LAYERSERIES_COMPAT_defender-iot = "([^"]+)"$', conf, re.M)
    assert compat and RELEASE in compat.group(1).split()
    depends = re.search(r'^LAYERDEPENDS_defender-iot = "([^"]+)"$', conf, re.M).group(1).split()
    assert set(depends) <= {"core", "openembedded-layer", "networking-layer"}, depends


def test_readme_security_and_license():
    readme = (LAYER / "README.md").read_text()
    for word in ("maintainer", "patch"):
        assert word in readme.lower(), f"README.md does not mention '{word}'"
    assert re.search(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", readme), "README.md has no email address"
    assert (LAYER / "SECURITY.md").is_file()
    assert (LAYER / "COPYING.MIT").read_text() == (REPO / "LICENSE").read_text()


def patches_without_upstream_status(root: Path) -> List[Path]:
    return [p for p in sorted(root.rglob("*")) if p.suffix in (".patch", ".diff")
            and not re.search(r"^Upstream-Status: \S", p.read_text(errors="replace"), re.M)]


def test_patches_carry_upstream_status(tmp_path):
    assert patches_without_upstream_status(LAYER) == []
    # The check itself finds a patch without the line.
    (tmp_path / "0001-fix.patch").write_text("Subject: fix\n\n---\n")
    (tmp_path / "0002-ok.patch").write_text("Subject: ok\n\nUpstream-Status: Inappropriate [oe specific]\n---\n")
    assert patches_without_upstream_status(tmp_path) == [tmp_path / "0001-fix.patch"]


def test_no_insane_skip():
    for path in bb_files() + [LAYER / "conf" / "layer.conf"]:
        assert "INSANE_SKIP" not in path.read_text(), path


# ---- PACKAGECONFIG against the agent's //feature: lines -------------------

def test_every_feature_has_a_packageconfig(recipe):
    flags = recipe.packageconfig()
    features = list(load_features())
    assert len(features) >= 3
    for f in features:
        assert pc_name(f) in flags, f"{f.source.name}: no PACKAGECONFIG[{pc_name(f)}] in {RECIPE.name}"
        fields = flags[pc_name(f)] + ["", "", ""]
        assert fields[0] == f"-D{f.option}=ON" and fields[1] == f"-D{f.option}=OFF", (pc_name(f), fields)
        wanted = sorted({OE_PROVIDER[lib] for lib in f.libs})
        assert sorted(fields[2].split()) == wanted, f"PACKAGECONFIG[{pc_name(f)}] DEPENDS {fields[2]!r}, libs {f.libs}"


def test_every_packageconfig_is_a_feature_or_build_option(recipe):
    names = {pc_name(f) for f in load_features()} | {k.packageconfig for k in load_knobs() if k.type == "BOOL"}
    extra = set(recipe.packageconfig()) - names
    assert not extra, f"PACKAGECONFIG values without a feature in agent/src or an option in agent/CMakeLists.txt: " \
                      f"{sorted(extra)}"


def unwired_build_options(recipe: Recipe, knobs: List[Knob]) -> List[str]:
    """What the recipe lacks for each build option of agent/CMakeLists.txt
    that is not a feature: a positive PACKAGECONFIG (ON/OFF options), or a
    DEFENDER_IOT_ variable passed to EXTRA_OECMAKE (values)."""
    missing = []
    flags = recipe.packageconfig()
    build_options = recipe.value("DEFENDER_IOT_BUILD_OPTIONS").split()
    extra_oecmake = recipe.value("EXTRA_OECMAKE").split()
    for k in knobs:
        where = f"{k.source.name}:{k.line} declares {k.option}; add to {RECIPE.name}:"
        if k.type == "BOOL":
            if flags.get(k.packageconfig, [])[:2] != [f"-D{k.option}=ON", f"-D{k.option}=OFF"]:
                missing.append(f'{where} PACKAGECONFIG[{k.packageconfig}] = "-D{k.option}=ON,-D{k.option}=OFF"')
            if k.packageconfig not in build_options:
                missing.append(f"{where} '{k.packageconfig}' in DEFENDER_IOT_BUILD_OPTIONS")
            if k.packaged_default and k.packageconfig not in recipe.value("PACKAGECONFIG").split():
                missing.append(f"{where} '{k.packageconfig}' in the default PACKAGECONFIG (its default is ON)")
            continue
        if [v.VarOp.strip() for v in recipe.vars.get(k.recipe_var, [])] != ["?="] \
                or recipe.value(k.recipe_var) != k.packaged_default:
            missing.append(f'{where} {k.recipe_var} ?= "{k.packaged_default}"')
        if f"-D{k.option}=${{{k.recipe_var}}}" not in extra_oecmake:
            missing.append(f"{where} -D{k.option}=${{{k.recipe_var}}} in EXTRA_OECMAKE")
    return missing


def test_every_build_option_is_wired(recipe):
    knobs = load_knobs()
    assert {"AGENT_REPLAY", "AGENT_CONFIG_REFERENCE", "AGENT_LTO", "AGENT_MAX_PAGE_SIZE"} <= {k.option for k in knobs}
    missing = unwired_build_options(recipe, knobs)
    assert not missing, "\n".join(missing)
    assert sorted(recipe.value("DEFENDER_IOT_BUILD_OPTIONS").split()) == \
        sorted(k.packageconfig for k in knobs if k.type == "BOOL")
    # what PACKAGECONFIG decides, EXTRA_OECMAKE must not override
    assert not [o for o in recipe.value("EXTRA_OECMAKE").split()
                if o.split("=")[0][2:] in {k.option for k in knobs if k.type == "BOOL"}]


def test_a_new_build_option_is_reported_with_the_line_to_add(recipe, tmp_path):
    """An option the agent adds later (here a copy of the CMakeLists.txt
    with two more) fails the check above, naming what to write."""
    agent = tmp_path / "agent"
    (agent / "cmake").mkdir(parents=True)
    text = (REPO / "agent" / "CMakeLists.txt").read_text()
    (agent / "CMakeLists.txt").write_text(text + '\noption(AGENT_PRIVACY_MASKING "Privacy masking" ON)\n'
                                          'set(AGENT_LOG_TAG "agent" CACHE STRING "syslog tag")\n')
    shutil.copy(REPO / "agent" / "cmake" / "Features.cmake", agent / "cmake")
    missing = unwired_build_options(recipe, load_knobs(agent))
    assert [m.split("; ", 1)[1] for m in missing] == [
        f"add to {RECIPE.name}: PACKAGECONFIG[privacy-masking] = "
        '"-DAGENT_PRIVACY_MASKING=ON,-DAGENT_PRIVACY_MASKING=OFF"',
        f"add to {RECIPE.name}: 'privacy-masking' in DEFENDER_IOT_BUILD_OPTIONS",
        f"add to {RECIPE.name}: 'privacy-masking' in the default PACKAGECONFIG (its default is ON)",
        f'add to {RECIPE.name}: DEFENDER_IOT_LOG_TAG ?= "agent"',
        f"add to {RECIPE.name}: -DAGENT_LOG_TAG=${{DEFENDER_IOT_LOG_TAG}} in EXTRA_OECMAKE",
    ]


def test_default_packageconfig_is_the_agent_default(recipe):
    default = recipe.value("PACKAGECONFIG").split()
    flags = recipe.packageconfig()
    assert not [v for v in default if v not in flags], "a default PACKAGECONFIG value has no flag"
    # LTO is the only one left to the distribution (DISTRO_FEATURES lto)
    assert "lto" not in default
    assert sorted(default) == sorted([pc_name(f) for f in load_features() if f.default]
                                     + [k.packageconfig for k in load_knobs() if k.type == "BOOL" and k.packaged_default])
    # ... and the configurator's default profile asks for the same.
    profile = (REPO / "kas" / "profile" / "default.yml").read_text()
    m = re.search(r'PACKAGECONFIG:pn-defender-iot-micro-agent = "([^"]*)"', profile)
    assert m and sorted(m.group(1).split()) == sorted(default)


def test_profiles_are_installed_by_name(recipe):
    assert 'file://profiles/${DEFENDER_IOT_PROFILE}.json' in recipe.value("SRC_URI")
    assert recipe.value("DEFENDER_IOT_PROFILE") == "default"
    assert [v.VarOp.strip() for v in recipe.vars["DEFENDER_IOT_PROFILE"]] == ["?="]
    assert '${sysconfdir}/defender-iot/config.json' in recipe.value("CONFFILES", "${PN}").split()


def test_inherits_and_pins(recipe):
    text = RECIPE.read_text()
    inherit = re.search(r"^inherit (.*)$", text, re.M).group(1).split()
    for cls in ("cmake", "systemd", "update-rc.d", "useradd", "ptest"):
        assert cls in inherit
    assert re.fullmatch(r"[0-9a-f]{40}", recipe.value("SRCREV"))
    assert "${AUTOREV}" not in text
    assert recipe.value("S") == "${UNPACKDIR}/${BP}/agent"
    assert subprocess.run(["git", "cat-file", "-e", recipe.value("SRCREV") + "^{commit}"], cwd=REPO).returncode == 0, \
        "SRCREV is not a commit of this repository"


# ---- the recipe's shell code, run on the host ------------------------------

def expand(body: str, values: Dict[str, str]) -> str:
    out = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), body)
    left = re.findall(r"\$\{[^}]*\}", out)
    assert not left, f"unexpanded in recipe function: {left}"
    return out


@pytest.fixture(scope="module")
def install_shim(tmp_path_factory) -> Path:
    """`install` without -o/-g (no defender-iot user on the host), logging
    the owner each path asked for, as pseudo would record it."""
    d = tmp_path_factory.mktemp("shim")
    (d / "install").write_text(f"""#!{sys.executable}
import os, sys
args, owner = sys.argv[1:], []
while "-o" in args or "-g" in args:
    i = args.index("-o") if "-o" in args else args.index("-g")
    owner.append(args[i] + args[i + 1])
    del args[i:i + 2]
if owner:
    with open(os.environ["SHIM_LOG"], "a") as log:
        log.write(args[-1] + " " + " ".join(owner) + "\\n")
os.execv("/usr/bin/install", ["install"] + args)
""")
    (d / "install").chmod(0o755)
    return d


def run_function(body: str, env_path: Path, log: Path) -> None:
    proc = subprocess.run(["sh", "-e", "-c", body], capture_output=True, text=True,
                          env=dict(os.environ, PATH=f"{env_path}:{os.environ['PATH']}", SHIM_LOG=str(log)))
    assert proc.returncode == 0, f"recipe function failed:\n{body}\n{proc.stderr}"


def test_do_install_installs_exactly_files(recipe, agent, install_shim, tmp_path):
    d, unpack = tmp_path / "image", tmp_path / "sources"
    (unpack / "profiles").mkdir(parents=True)
    (unpack / "profiles" / "gateway.json").write_text('{"Agent_Transport": "iothub"}\n')
    subprocess.run(["cmake", "--install", str(agent.build_dir), "--prefix", "/usr"], check=True,
                   env=dict(os.environ, DESTDIR=str(d)), capture_output=True)
    values = dict(OE_PATHS, D=str(d), S=str(REPO / "agent"), UNPACKDIR=str(unpack), DEFENDER_IOT_PROFILE="gateway")
    log = tmp_path / "owners"
    run_function(expand(recipe.funcs[("do_install", "append")], values), install_shim, log)

    installed = sorted("/" + str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir())
    files = [expand(x, values) for x in recipe.value("FILES", "${PN}").split()]
    for entry in files:
        assert (d / entry.lstrip("/")).exists(), f"FILES:${{PN}} lists {entry}, which do_install does not install"
    stray = [p for p in installed if not any(p == f or p.startswith(f + "/") for f in files)]
    assert not stray, f"installed but not in FILES:${{PN}}: {stray}"
    for conffile in recipe.value("CONFFILES", "${PN}").split():
        assert (d / expand(conffile, values).lstrip("/")).is_file()

    assert json.loads((d / "etc/defender-iot/config.json").read_text()) == {"Agent_Transport": "iothub"}
    assert oct((d / "var/lib/defender-iot").stat().st_mode & 0o777) == "0o700"
    assert "/var/lib/defender-iot -odefender-iot -gdefender-iot" in log.read_text()
    unit = (d / "usr/lib/systemd/system/defender-iot-agent.service").read_text()
    assert "ExecStart=/usr/sbin/defender-iot-agent " in unit and (d / "usr/sbin/defender-iot-agent").is_file()


def test_ptest_runs_the_agent_suite_and_checks_features(recipe, agent_factory, install_shim):
    """do_install_ptest and run-ptest as the target would run them, with the
    C tests reading their fixtures from the installed ptest directory."""
    stage = REPO / "build" / "layer-ptest"
    d = stage / "image"
    shutil.rmtree(d, ignore_errors=True)
    ptest = d / OE_PATHS["PTEST_PATH"].lstrip("/")
    options = {}
    for value, fields in recipe.packageconfig().items():
        on = value in recipe.value("PACKAGECONFIG").split()
        key, state = fields[0 if on else 1].lstrip("-D").split("=")
        options[key] = state == "ON"
    build = agent_factory(options, testing=True, extra={"AGENT_TEST_FIXTURES_DIR": str(ptest / "fixtures")})
    values = dict(OE_PATHS, D=str(d), B=str(build.build_dir), S=str(REPO / "agent"),
                  PACKAGECONFIG=recipe.value("PACKAGECONFIG"),
                  DEFENDER_IOT_BUILD_OPTIONS=recipe.value("DEFENDER_IOT_BUILD_OPTIONS"))
    run_function(expand(recipe.funcs[("do_install_ptest", "")], values), install_shim, stage / "owners")
    shutil.copy(LAYER / "recipes-security" / "defender-iot" / "files" / "run-ptest", ptest / "run-ptest")

    assert not list((ptest / "fixtures").rglob("*.py"))
    # the features the agent must list, without the build options
    assert sorted((ptest / "packageconfig").read_text().split()) == \
        sorted(pc_name(f) for f in load_features() if f.default)
    suites = sorted(p.name for p in (ptest / "tests").iterdir())
    assert len(suites) >= 5, suites
    proc = subprocess.run(["sh", str(ptest / "run-ptest")], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PATH=f"{build.build_dir}:{os.environ['PATH']}"))
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL:")], proc.stdout
    assert sorted(line[6:] for line in lines if line.startswith("PASS: test_")) == suites
    assert "PASS: list-features" in lines


def test_ptest_fails_when_features_differ(agent, tmp_path):
    ptest = tmp_path / "ptest"
    (ptest / "tests").mkdir(parents=True)
    shutil.copy(LAYER / "recipes-security" / "defender-iot" / "files" / "run-ptest", ptest / "run-ptest")
    (ptest / "packageconfig").write_text("heartbeat local process\n")
    proc = subprocess.run(["sh", str(ptest / "run-ptest")], capture_output=True, text=True,
                          env=dict(os.environ, PATH=f"{agent.build_dir}:{os.environ['PATH']}"))
    assert "FAIL: list-features" in proc.stdout.splitlines()


def test_run_ptest_passes_shellcheck():
    proc = subprocess.run(["shellcheck", "-s", "sh", str(LAYER / "recipes-security/defender-iot/files/run-ptest")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# ---- service files -------------------------------------------------------

def unit_settings() -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in (PACKAGING / "defender-iot-agent.service").read_text().splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_unit_passes_systemd_analyze_verify(agent, tmp_path):
    root = tmp_path / "root"
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for target in Path("/lib/systemd/system").glob("*.target"):
        shutil.copy(target, units)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "bin").mkdir()
    shutil.copy(agent.binary, root / "usr/sbin/defender-iot-agent")
    shutil.copy(shutil.which("kill"), root / "bin/kill")
    shutil.copy(PACKAGING / "defender-iot-agent.service", units)
    proc = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "defender-iot-agent.service"],
                          capture_output=True, text=True)
    complaints = [line for line in (proc.stdout + proc.stderr).splitlines() if "defender-iot-agent" in line]
    assert proc.returncode == 0 and not complaints, "\n".join(complaints) or proc.stderr


def test_unit_is_hardened(recipe):
    unit = unit_settings()
    user = recipe.value("USERADD_PARAM", "${PN}").split()[-1]
    assert unit["User"] == user == "defender-iot"
    assert unit["ExecStart"].split()[0] == "/usr/sbin/defender-iot-agent"
    assert unit["NoNewPrivileges"] == "yes" and unit["PrivateTmp"] == "yes"
    assert unit["ProtectSystem"] == "strict"
    assert unit["StateDirectory"] == "defender-iot"  # /var/lib/defender-iot, Agent_StateDirectory's default
    caps = {"CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE", "CAP_NET_ADMIN"}
    assert set(unit["AmbientCapabilities"].split()) == caps == set(unit["CapabilityBoundingSet"].split())
    assert unit["Restart"] == "on-failure"
    assert recipe.value("SYSTEMD_SERVICE", "${PN}") == "defender-iot-agent.service"
    assert recipe.value("INITSCRIPT_NAME") == "defender-iot-agent"


def test_init_script_passes_shellcheck():
    proc = subprocess.run(["shellcheck", "-s", "sh", str(PACKAGING / "defender-iot-agent.init")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# ---- packagegroup, image, oeqa -------------------------------------------

def test_test_image_and_packagegroup():
    image = parse_recipe(LAYER / "recipes-security/images/defender-iot-test-image.bb")
    install = image.value("IMAGE_INSTALL").split()
    for pkg in ("packagegroup-core-boot", "packagegroup-defender-iot", "dropbear", "iptables"):
        assert pkg in install
    assert "defender_iot" in image.value("TEST_SUITES").split()
    group = parse_recipe(LAYER / "recipes-security/packagegroups/packagegroup-defender-iot.bb")
    assert "defender-iot-micro-agent" in group.value("RDEPENDS", "${PN}").split()


def load_oeqa_cases():
    """The oeqa module, with the oeqa framework's classes stubbed: what is
    exercised here are its run(cmd)-based checks, not the framework."""
    stubs = {
        "oeqa": None, "oeqa.core": None, "oeqa.core.decorator": None, "oeqa.runtime": None,
        "oeqa.runtime.decorator": None,
        "oeqa.core.decorator.depends": {"OETestDepends": lambda deps: (lambda f: f)},
        "oeqa.runtime.case": {"OERuntimeTestCase": object},
        "oeqa.runtime.decorator.package": {"OEHasPackage": lambda pkgs: (lambda f: f)},
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    try:
        for name, attrs in stubs.items():
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs or {})
            sys.modules[name] = mod
        path = LAYER / "lib/oeqa/runtime/cases/defender_iot.py"
        ns: Dict[str, object] = {"__name__": "defender_iot_oeqa"}
        exec(compile(path.read_text(), str(path), "exec"), ns)
        return types.SimpleNamespace(**ns)
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def test_oeqa_checks_against_a_real_agent(agent, tmp_path):
    py_compile.compile(str(LAYER / "lib/oeqa/runtime/cases/defender_iot.py"), doraise=True)
    cases = load_oeqa_cases()
    assert [n for n in vars(cases.DefenderIotAgentTest) if n.startswith("test_")]

    def run(cmd: str) -> Tuple[int, str]:
        proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, PATH=f"{agent.build_dir}:{os.environ['PATH']}"))
        return proc.returncode, proc.stdout + proc.stderr

    listed = cases.list_features(run)
    assert listed == sorted(pc_name(f) for f in load_features() if f.default)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"Agent_StateDirectory": str(tmp_path / "state")}))
    config.chmod(0o600)
    events = cases.once(run, str(config))
    assert {"Heartbeat", "SystemInformation"} <= {e["Name"] for e in events}
    results = cases.posture(events)
    assert results and set(results.values()) <= {"Pass", "Fail", "Skip", "Error"}
    with pytest.raises(AssertionError, match="no Baseline event"):
        cases.posture([{"Name": "Heartbeat"}])
    with pytest.raises(AssertionError, match="exited"):
        cases.once(run, str(tmp_path / "missing.json"))
