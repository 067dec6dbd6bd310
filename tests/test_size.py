"""`defender-iot size`: totals reconcile with the section headers on every
architecture, components are never negative, diff, budget and HTML."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_agent

from defender_iot.cli import main
from defender_iot.features import load_features
from defender_iot.size import SECTION_KINDS, UNATTRIBUTED, size_report

DEBUG = {"CMAKE_C_FLAGS": "-g"}  # DWARF for attribution; -g changes no allocated section
ISSUE2 = ("heartbeat", "system_information", "process", "network_activity", "listening_ports", "login", "local")


def only(*names: str) -> dict:
    """Options that build exactly these features (by name) and nothing else."""
    return {f.option: f.name in names for f in load_features()}


def allocated_bytes(elf: Path) -> int:
    """Sum of the SHF_ALLOC sections as binutils' readelf sees them (an
    independent reading of the same headers)."""
    out = subprocess.run(["readelf", "-SW", str(elf)], check=True, stdout=subprocess.PIPE, text=True).stdout
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+[0-9a-f]+\s+(\S*)", line)
        if m and "A" in m.group(6):
            total += int(m.group(5), 16)
    return total


def check_reconciles(elf: Path) -> None:
    report = size_report(elf)
    assert report.total == allocated_bytes(elf) > 0
    rows = [report.components[c].get(k, 0) for c in report.components for k in SECTION_KINDS]
    assert min(rows) >= 0
    assert sum(rows) == report.total
    for k in SECTION_KINDS:
        assert sum(report.components[c].get(k, 0) for c in report.components) == report.kind_total(k)


@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "armhf"])
def test_totals_equal_allocated_sections(agent_factory, arch, tmp_path):
    build = agent_factory(only(*ISSUE2), arch=arch, extra=DEBUG)
    check_reconciles(build.binary)
    report = size_report(build.binary)
    assert report.arch == arch and report.has_dwarf
    # every compiled-in feature has its own row, with code in it
    listed = run_agent(build, "--list-features").stdout.splitlines()
    assert "collector heartbeat" in listed
    for feature in listed:
        assert report.components[feature].get("text", 0) > 0, feature
    assert report.components["core"]["text"] > 0
    # the default build (no -g) and its stripped copy reconcile as well
    plain = agent_factory(only(*ISSUE2), arch=arch).binary
    check_reconciles(plain)
    # without DWARF, global symbols are placed through the build's object
    # files, and local ones through the symbol table's file names, which a
    # link-time optimised build does not keep: only DWARF attributes those
    without_dwarf = size_report(agent_factory(only(*ISSUE2), arch=arch, extra={"AGENT_LTO": "OFF"}).binary)
    assert not without_dwarf.has_dwarf and without_dwarf.objects
    for feature in listed:
        assert without_dwarf.components[feature].get("text", 0) > 0, feature
    lto = size_report(plain)  # only DWARF can place its code: unattributed, never called third-party
    third_party = {s.name for s in report.symbols if s.component == "third-party"}
    assert not lto.objects and {s.name for s in lto.symbols if s.component == "third-party"} <= third_party
    stripped = tmp_path / "stripped"
    shutil.copy(plain, stripped)
    strip = {"x86_64": "strip", "aarch64": "aarch64-linux-gnu-strip", "armhf": "arm-linux-gnueabihf-strip"}[arch]
    subprocess.run([strip, str(stripped)], check=True)
    check_reconciles(stripped)
    s = size_report(stripped)
    assert not s.has_symbols and s.total == size_report(plain).total
    assert set(s.components) <= {UNATTRIBUTED, "toolchain tables"}


def test_cli_json_and_html(agent_factory, tmp_path, capsys):
    build = agent_factory(only(*ISSUE2), extra=DEBUG)
    page = tmp_path / "size.html"
    assert main(["size", str(build.binary), "--json", "--html", str(page)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == allocated_bytes(build.binary)
    assert sum(c["total"] for c in data["components"]) == data["total"]
    assert [c["name"] for c in data["components"]][0] == "core"
    text = page.read_text()
    assert 'aria-label="treemap of components"' in text and "collector heartbeat" in text
    # every component is a rectangle of the treemap, areas in proportion
    sizes = {c["name"]: c["total"] for c in data["components"] if c["total"]}
    rects = re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="([\d.]+)" fill="[^"]+" '
                       r'stroke="#fff"><title>(.+?) [\d.]+ KiB</title>', text)
    assert {name for _, _, name in rects} == set(sizes)
    areas = {name: float(w) * float(h) for w, h, name in rects}
    core_share = sizes["core"] / sum(sizes.values())
    assert abs(areas["core"] / sum(areas.values()) - core_share) < 0.01
    # one file: no script, stylesheet or image fetched from anywhere
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=|url\(", text)


def test_diff_names_the_added_feature(agent_factory, capsys):
    small = agent_factory(only("heartbeat", "process", "local"), extra=DEBUG)
    big = agent_factory(only("heartbeat", "process", "login", "local"), extra=DEBUG)
    assert main(["size", str(big.binary), "--against", str(small.binary)]) == 0
    out = capsys.readouterr().out
    head = re.match(r"add/remove: (\d+)/(\d+) grow/shrink: \d+/\d+ up/down: (\d+)/(-?\d+) \((-?\d+)\)", out)
    assert head and int(head.group(1)) > 0 and int(head.group(5)) > 0
    assert re.search(r"^collector_login\s+-\s+\d+\s+\+\d+$", out, re.M)
    grown = size_report(big.binary).total - size_report(small.binary).total
    assert re.search(rf"^collector login\s+0\s+\d+\s+\+\d+$", out, re.M)
    assert re.search(r"^in memory\s+\d+\s+\d+\s+" + re.escape(f"{grown:+d}") + "$", out, re.M)
    assert re.search(r"^Total: Before=\d+, After=\d+, chg \+\d+\.\d\d%$", out, re.M)
    assert main(["size", str(big.binary), "--against", str(small.binary), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_after"] - data["total_before"] == grown
    assert data["added"] == int(head.group(1))
    assert {"name": "collector_login", "old": None}.items() <= next(
        r for r in data["symbols"] if r["name"] == "collector_login").items()


def test_budget_exceeded_names_line_and_biggest(agent_factory, tmp_path, capsys):
    build = agent_factory(only(*ISSUE2), extra=DEBUG)
    profile = tmp_path / "tight.yml"
    profile.write_text("product: tight\narch: x86_64\ncollectors: default\nbudget:\n  ram_kb: 512\n  flash_kb: 8\n")
    assert main(["size", str(build.binary), "--profile", str(profile)]) == 1
    err = capsys.readouterr().err
    assert f"{profile}:6: budget.flash_kb is 8 KiB" in err
    assert re.search(r"biggest: \S.* \d+\.\d KiB, ", err)
    profile.write_text("product: roomy\narch: x86_64\nbudget: {flash_kb: 4096, ram_kb: 512}\n")
    assert main(["size", str(build.binary), "--profile", str(profile)]) == 0
    profile.write_text("product: other\narch: armhf\nbudget: {flash_kb: 4096}\n")
    assert main(["size", str(build.binary), "--profile", str(profile)]) == 2
    assert f"{profile}:2: the profile is for armhf but" in capsys.readouterr().err


def test_not_an_elf(tmp_path, capsys):
    bad = tmp_path / "x"
    bad.write_text("hello")
    assert main(["size", str(bad)]) == 2
    assert f"{bad}: not an ELF file" in capsys.readouterr().err


EDGE_C = r"""
__thread int tls_counter = 5;
__thread char tls_buf[256];
int real_data[64] = {1};
extern int alias_data[64] __attribute__((alias("real_data")));
void f(void) {}
void g(void) __attribute__((alias("f")));
int main(void) { g(); return tls_counter + tls_buf[3] + real_data[1] + alias_data[2]; }
"""


@pytest.mark.parametrize("cc", ["cc", "aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc"])
def test_tls_aliases_and_absolute_symbols(tmp_path, cc):
    """The cases that make other size tools' rows negative: TLS symbols,
    aliases, an absolute symbol."""
    src = tmp_path / "edge.c"
    src.write_text(EDGE_C)
    elf = tmp_path / "edge"
    subprocess.run([cc, "-O1", "-o", str(elf), str(src), "-Wl,--defsym,abs_marker=0x123456"], check=True)
    check_reconciles(elf)
    report = size_report(elf)
    by_name = {s.name: s for s in report.symbols}
    assert by_name["tls_buf"].attributed == 256 and by_name["tls_buf"].section == ".tbss"
    assert by_name["tls_counter"].attributed == 4 and by_name["tls_counter"].section == ".tdata"
    assert sum(s.attributed for s in report.symbols if s.name in ("real_data", "alias_data")) == 256
    assert "abs_marker" not in by_name


def test_globals_of_a_static_library_are_third_party(tmp_path):
    """With DWARF for the program, a global that DWARF does not describe
    comes from a library linked in statically (cJSON in a static build)."""
    (tmp_path / "lib.c").write_text("int vendor_table[32] = {1};\nint vendor_call(int x) { return vendor_table[x & 31] * x; }\n")
    (tmp_path / "prog.c").write_text("int vendor_call(int);\nint main(int c, char **v) { (void)v; return vendor_call(c); }\n")
    subprocess.run(["cc", "-O1", "-c", "-o", str(tmp_path / "lib.o"), str(tmp_path / "lib.c")], check=True)
    subprocess.run(["ar", "rcs", str(tmp_path / "libvendor.a"), str(tmp_path / "lib.o")], check=True)
    elf = tmp_path / "prog"
    subprocess.run(["cc", "-O1", "-g", "-o", str(elf), str(tmp_path / "prog.c"), str(tmp_path / "libvendor.a")], check=True)
    report = size_report(elf)
    by_name = {s.name: s for s in report.symbols}
    assert report.has_dwarf
    assert by_name["vendor_call"].component == "third-party"
    assert by_name["vendor_table"].component == "third-party"
    check_reconciles(elf)
