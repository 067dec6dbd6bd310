"""What each part of the agent costs: section kinds (text, rodata, data, bss)
by component (core, each collector, detector and transport, third-party),
read from an ELF file with pyelftools.

The totals reconcile with the section headers by construction: every byte of
every SHF_ALLOC section is counted once, in the section's kind, either for
the symbol that covers it or in one explicit row. Symbols are clipped to
their section and to the bytes not yet covered, so aliases, overlapping and
TLS symbols cannot make a row negative (the defects of other size tools)."""

from __future__ import annotations

import bisect
import html
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from elftools.common.exceptions import ELFError
from elftools.dwarf.callframe import FDE
from elftools.elf.constants import SH_FLAGS
from elftools.elf.descriptions import describe_reloc_type
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from defender_iot.errors import UserError
from defender_iot.features import KINDS, load_features, repo_root

SECTION_KINDS = ("text", "rodata", "data", "bss")
# Component groups: the features, and the shared helpers of agent/src/lib/
# (linked only when a feature calls them, so each is a row of its own).
GROUPS = KINDS + ("lib",)
CORE = "core"
THIRD_PARTY = "third-party"
TOOLCHAIN = "toolchain tables"  # dynamic linking and unwind tables: the linker's, not one source file's
UNATTRIBUTED = "unattributed"
_ARCH = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_ARM": "armhf", "EM_386": "i386"}
# Sections the linker fills from no source of ours (symbols, relocations,
# PLT/GOT, unwind tables): their bytes are the toolchain's row, not "unknown".
_TOOLCHAIN_SECTION = re.compile(
    r"^\.(interp|note\..*|gnu\.hash|hash|dynsym|dynstr|gnu\.version.*|rela?\..*|plt.*|got.*|dynamic|"
    r"eh_frame.*|gcc_except_table|ARM\.ex(idx|tab)|init_array|fini_array|preinit_array|relr\.dyn)$")


@dataclass(frozen=True)
class Section:
    name: str
    kind: str
    addr: int
    size: int


@dataclass
class Symbol:
    name: str
    addr: int
    size: int          # st_size
    section: str
    component: str
    bind: str
    attributed: int = 0  # bytes counted for it after clipping


@dataclass
class SizeReport:
    path: Path
    arch: str
    has_symbols: bool
    has_dwarf: bool
    sections: List[Section]
    symbols: List[Symbol]
    objects: bool = False  # global symbols placed through the build directory's object files
    strings: List[Symbol] = field(default_factory=list)  # string literals placed through pointer tables
    # component -> kind -> bytes
    components: Dict[str, Dict[str, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(s.size for s in self.sections)

    def kind_total(self, kind: str) -> int:
        return sum(s.size for s in self.sections if s.kind == kind)

    @property
    def flash(self) -> int:
        """Bytes stored in the image: text + rodata + data."""
        return sum(self.kind_total(k) for k in ("text", "rodata", "data"))

    @property
    def ram(self) -> int:
        """Static RAM: data + bss."""
        return self.kind_total("data") + self.kind_total("bss")

    def component_total(self, name: str) -> int:
        return sum(self.components.get(name, {}).values())

    def ordered_components(self) -> List[str]:
        def key(c: str):
            fixed = {CORE: 0, THIRD_PARTY: 5, TOOLCHAIN: 6, UNATTRIBUTED: 7}
            if c in fixed:
                return (fixed[c], c)
            return (1 + GROUPS.index(c.split()[0]), c)
        return sorted(self.components, key=key)

    def to_json(self) -> dict:
        return {
            "file": str(self.path),
            "arch": self.arch,
            "symbols": self.has_symbols,
            "dwarf": self.has_dwarf,
            "objects": self.objects,
            "total": self.total,
            "flash": self.flash,
            "ram": self.ram,
            "kinds": {k: self.kind_total(k) for k in SECTION_KINDS},
            "sections": [{"name": s.name, "kind": s.kind, "size": s.size} for s in self.sections],
            "components": [{"name": c, **{k: self.components[c].get(k, 0) for k in SECTION_KINDS},
                            "total": self.component_total(c)} for c in self.ordered_components()],
            "symbol_sizes": {s.name: s.size for s in self.symbols},
        }


def section_kind(flags: int, sh_type: str) -> str:
    if sh_type == "SHT_NOBITS":
        return "bss"
    if flags & SH_FLAGS.SHF_EXECINSTR:
        return "text"
    if flags & SH_FLAGS.SHF_WRITE:
        return "data"
    return "rodata"


class _Components:
    """Source path or file name -> component, from the agent tree's layout:
    agent/src/<kind>s/<name>.c is that feature, agent/src/lib/<topic>.c is
    "lib <topic>", agent/src/core/ and main.c are the core, anything else is
    third-party."""

    def __init__(self) -> None:
        agent = repo_root() / "agent"
        self.by_base: Dict[str, str] = {"main.c": CORE, "features.c": CORE}
        for p in (agent / "src" / "core").glob("*.c"):
            self.by_base[p.name] = CORE
        for p in (agent / "src" / "lib").glob("*.c"):
            self.by_base[p.name] = f"lib {p.stem}"
        self.features = {(f.kind, f.name) for f in load_features(agent)}
        for kind, name in self.features:
            self.by_base.setdefault(f"{name}.c", f"{kind} {name}")

    def of_path(self, path: str) -> str:
        m = re.search(r"(?:^|/)src/(collector|detector|transport)s/([a-z0-9_]+)\.c$", path)
        if m:
            return f"{m.group(1)} {m.group(2)}"
        m = re.search(r"(?:^|/)src/lib/([A-Za-z0-9_]+)\.c$", path)
        if m:
            return f"lib {m.group(1)}"
        if re.search(r"(?:^|/)src/core/[^/]+\.c$", path) or re.search(r"(?:^|/)(src/main|generated/features)\.c$", path):
            return CORE
        return THIRD_PARTY

    def of_file_symbol(self, name: str) -> str:
        return self.by_base.get(os.path.basename(name), THIRD_PARTY)

    def of_name(self, name: str) -> Optional[str]:
        m = re.match(r"^(collector|detector|transport)_([a-z0-9_]+)$", name)
        if m and (m.group(1), m.group(2)) in self.features:
            return f"{m.group(1)} {m.group(2)}"
        return None


def _dwarf_addresses(elf: ELFFile, comps: _Components) -> Dict[int, str]:
    """Start address of each function and variable described in DWARF ->
    the component of its compile unit."""
    out: Dict[int, str] = {}
    dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)

    def cu_component(cu) -> Optional[str]:
        top = cu.get_top_DIE()
        name = top.attributes.get("DW_AT_name")
        comp_dir = top.attributes.get("DW_AT_comp_dir")
        if not name:
            return None
        path = name.value.decode(errors="replace")
        if comp_dir and not path.startswith("/"):
            path = comp_dir.value.decode(errors="replace") + "/" + path
        return comps.of_path(path)

    def origin_component(die, default: str) -> str:
        # A link-time optimised build describes its code in "<artificial>"
        # units whose entries point back to the source file's own unit.
        for attr in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if attr in die.attributes:
                return cu_component(die.get_DIE_from_attribute(attr).cu) or default
        return default

    for cu in dwarf.iter_CUs():
        top = cu.get_top_DIE()
        name = top.attributes.get("DW_AT_name")
        component = cu_component(cu)
        if component is None:
            continue
        artificial = name.value == b"<artificial>"
        for die in cu.iter_DIEs():
            if artificial and die.tag in ("DW_TAG_subprogram", "DW_TAG_variable"):
                component = origin_component(die, THIRD_PARTY)
            if die.tag == "DW_TAG_subprogram" and "DW_AT_low_pc" in die.attributes:
                out.setdefault(die.attributes["DW_AT_low_pc"].value, component)
            elif die.tag == "DW_TAG_variable" and "DW_AT_location" in die.attributes:
                loc = die.attributes["DW_AT_location"]
                # DW_OP_addr (0x03) followed by the address: a static object
                if loc.form == "DW_FORM_exprloc" and loc.value and loc.value[0] == 0x03:
                    size = len(loc.value) - 1
                    addr = int.from_bytes(bytes(loc.value[1:1 + size]), "little" if elf.little_endian else "big")
                    out.setdefault(addr, component)
    return out


def _object_symbols(elf_path: Path, comps: _Components) -> Dict[str, str]:
    """Without DWARF: global symbol -> component from the object files of
    the CMake build directory the binary sits in, whose paths mirror the
    sources (CMakeFiles/<target>.dir/src/collectors/login.c.o)."""
    out: Dict[str, str] = {}
    for obj in sorted((elf_path.parent / "CMakeFiles").glob("*.dir/**/*.c.o")):
        component = comps.of_path(str(obj)[:-2])
        try:
            with open(obj, "rb") as fh:
                symtab = ELFFile(fh).get_section_by_name(".symtab")
                for sym in symtab.iter_symbols() if symtab else []:
                    if sym.name == "__gnu_lto_slim":
                        return {}  # link-time optimisation: the objects hold no code, so they tell nothing
                    if sym["st_info"]["bind"] != "STB_LOCAL" and sym["st_shndx"] != "SHN_UNDEF" and sym.name:
                        out.setdefault(sym.name, component)
        except (OSError, ELFError):
            continue
    return out


def size_report(path: Path) -> SizeReport:
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise UserError(f"{path}: cannot open: {e.strerror}") from None
    with fh:
        try:
            elf = ELFFile(fh)
        except ELFError as e:
            raise UserError(f"{path}: not an ELF file ({e})") from None
        return _report(path, elf)


def _report(path: Path, elf: ELFFile) -> SizeReport:
    arch = _ARCH.get(elf["e_machine"], elf["e_machine"])
    sections: List[Section] = []
    by_index: Dict[int, Section] = {}
    for i, s in enumerate(elf.iter_sections()):
        if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_size"] > 0:
            sec = Section(s.name, section_kind(s["sh_flags"], s["sh_type"]), s["sh_addr"], s["sh_size"])
            sections.append(sec)
            by_index[i] = sec
    tls_base = next((seg["p_vaddr"] for seg in elf.iter_segments() if seg["p_type"] == "PT_TLS"), 0)

    comps = _Components()
    has_dwarf = elf.has_dwarf_info() and elf.get_section_by_name(".debug_info") is not None
    dwarf_addr = _dwarf_addresses(elf, comps) if has_dwarf else {}
    by_object = {} if has_dwarf else _object_symbols(path, comps)

    symtab = elf.get_section_by_name(".symtab")
    symbols: List[Symbol] = []
    seen: Dict[Tuple[str, int, int], Symbol] = {}
    current_file: Optional[str] = None
    for sym in (symtab.iter_symbols() if symtab else []):
        typ, bind, shndx = sym["st_info"]["type"], sym["st_info"]["bind"], sym["st_shndx"]
        if typ == "STT_FILE":
            current_file = sym.name
            continue
        if typ in ("STT_SECTION",) or sym["st_size"] == 0 or not isinstance(shndx, int) or shndx not in by_index:
            continue  # UNDEF, ABS, COMMON and non-allocated sections own no bytes here
        sec = by_index[shndx]
        addr = sym["st_value"]
        if typ == "STT_TLS":
            addr += tls_base  # TLS symbols hold an offset into the TLS segment
        if typ == "STT_FUNC" and arch == "armhf":
            addr &= ~1  # the Thumb bit
        key = (sec.name, addr, sym["st_size"])
        if key in seen:  # an alias of a symbol already counted
            continue
        if bind == "STB_LOCAL" and current_file:
            component = comps.of_file_symbol(current_file)
        else:
            # When DWARF or the object files know every global of the agent,
            # a global they do not know comes from a library linked in. A
            # local here sits in a nameless (link-time optimised) unit: ours
            # or not, only DWARF can say.
            complete = bool(dwarf_addr or by_object) and bind != "STB_LOCAL"
            component = dwarf_addr.get(addr) or by_object.get(sym.name) or comps.of_name(sym.name) or (
                THIRD_PARTY if complete or sym.name.startswith("_") else UNATTRIBUTED)
        s = Symbol(sym.name, addr, sym["st_size"], sec.name, component, bind)
        seen[key] = s
        symbols.append(s)

    report = SizeReport(path=path, arch=arch, has_symbols=symtab is not None, has_dwarf=has_dwarf,
                        sections=sections, symbols=symbols, objects=bool(by_object))
    report.strings = _referenced_strings(elf, report)
    _attribute(report, _table_entries(elf, report))
    return report


def _owner(report: SizeReport) -> Callable[[int], Optional[str]]:
    """The component of the symbol covering an address, or None."""
    spans = sorted((s.addr, s.addr + s.size, s.component) for s in report.symbols)
    starts = [a for a, _, _ in spans]

    def owner(addr: int) -> Optional[str]:
        i = bisect.bisect_right(starts, addr) - 1
        return spans[i][2] if i >= 0 and spans[i][0] <= addr < spans[i][1] else None
    return owner


def _table_entries(elf: ELFFile, report: SizeReport) -> Dict[str, List[Tuple[str, int]]]:
    """Entries of the linker's tables that belong to one function or object:
    unwind entries (.eh_frame FDEs with their .eh_frame_hdr slot, .ARM.exidx)
    and dynamic relocations of pointers inside an object (.rela.dyn in a PIE).
    Section name -> [(component, bytes)]."""
    owner = _owner(report)

    out: Dict[str, List[Tuple[str, int]]] = {}
    names = {s.name for s in report.sections}
    if ".eh_frame" in names:
        try:
            entries = elf.get_dwarf_info(relocate_dwarf_sections=False).EH_CFI_entries()
        except Exception:  # an unwind table pyelftools cannot read stays the toolchain's
            entries = []
        fdes = [e for e in entries if isinstance(e, FDE)]
        for fde in fdes:
            comp = owner(fde.header["initial_location"])
            if comp:
                out.setdefault(".eh_frame", []).append((comp, fde.header["length"] + 4))
                out.setdefault(".eh_frame_hdr", []).append((comp, 8))  # its slot in the search table
    exidx = elf.get_section_by_name(".ARM.exidx")
    if exidx is not None and exidx["sh_flags"] & SH_FLAGS.SHF_ALLOC:
        data, base = exidx.data(), exidx["sh_addr"]
        for i in range(0, len(data) - 7, 8):
            word = int.from_bytes(data[i:i + 4], "little" if elf.little_endian else "big") & 0x7FFFFFFF
            offset = word - (1 << 31) if word & (1 << 30) else word  # prel31
            comp = owner((base + i + offset) & ~1)
            if comp:
                out.setdefault(".ARM.exidx", []).append((comp, 8))
    for sec in elf.iter_sections():
        if isinstance(sec, RelocationSection) and sec.name in (".rela.dyn", ".rel.dyn") and sec["sh_entsize"]:
            for rel in sec.iter_relocations():
                comp = owner(rel["r_offset"])
                if comp:
                    out.setdefault(sec.name, []).append((comp, sec["sh_entsize"]))
    return out


def _referenced_strings(elf: ELFFile, report: SizeReport) -> List[Symbol]:
    """String literals that a table of pointers refers to: in a PIE each such
    pointer has a RELATIVE dynamic relocation whose target is the string and
    whose place lies in the object that owns it (a check table, a config key
    table). Strings only code refers to stay unattributed: finding those
    would take a disassembler."""
    owner = _owner(report)

    rodata = [s for s in report.sections if s.kind == "rodata" and not _TOOLCHAIN_SECTION.match(s.name)]
    data: Dict[str, bytes] = {}

    def content(name: str) -> bytes:
        if name not in data:
            data[name] = elf.get_section_by_name(name).data()
        return data[name]

    word = elf.elfclass // 8
    order = "little" if elf.little_endian else "big"
    found: Dict[int, Symbol] = {}
    for rsec in elf.iter_sections():
        if not isinstance(rsec, RelocationSection) or rsec.name not in (".rela.dyn", ".rel.dyn"):
            continue
        for rel in rsec.iter_relocations():
            if "RELATIVE" not in describe_reloc_type(rel["r_info_type"], elf):
                continue
            place = rel["r_offset"]
            component = owner(place)
            if not component:
                continue
            if rel.is_RELA():
                target = rel["r_addend"]
            else:  # REL: the addend is the word at the place
                holder = next((x for x in report.sections if x.addr <= place < x.addr + x.size and x.kind != "bss"), None)
                if holder is None:
                    continue
                target = int.from_bytes(content(holder.name)[place - holder.addr:place - holder.addr + word], order)
            sec = next((x for x in rodata if x.addr <= target < x.addr + x.size), None)
            if sec is None or target in found or owner(target):
                continue
            blob = content(sec.name)
            end = blob.find(b"\0", target - sec.addr)
            if end < 0:
                continue
            found[target] = Symbol("(string)", target, end + 1 - (target - sec.addr), sec.name, component, "STRING")
    return list(found.values())


def _attribute(report: SizeReport, entries: Dict[str, List[Tuple[str, int]]]) -> None:
    """Count each section byte once: to the first symbol covering it, then
    to the owners of table entries, the rest to the toolchain's row or the
    unattributed row."""
    def add(component: str, kind: str, n: int) -> None:
        if n > 0:
            row = report.components.setdefault(component, {})
            row[kind] = row.get(kind, 0) + n

    per_section: Dict[str, List[Symbol]] = {}
    for s in report.symbols + report.strings:
        per_section.setdefault(s.section, []).append(s)
    for sec in report.sections:
        end = sec.addr + sec.size
        cursor = sec.addr
        covered = 0
        for s in sorted(per_section.get(sec.name, []), key=lambda s: (s.addr, -s.size, s.name)):
            lo, hi = max(s.addr, cursor, sec.addr), min(s.addr + s.size, end)
            if hi > lo:
                s.attributed = hi - lo
                covered += hi - lo
                cursor = hi
                add(s.component, sec.kind, hi - lo)
        rest = sec.size - covered
        for component, n in entries.get(sec.name, []):
            take = min(n, rest)
            add(component, sec.kind, take)
            rest -= take
        add(TOOLCHAIN if _TOOLCHAIN_SECTION.match(sec.name) else UNATTRIBUTED, sec.kind, rest)
    report.components.setdefault(UNATTRIBUTED, {})


# ---- text output ----

def format_report(report: SizeReport, top: int = 0) -> str:
    total = report.total or 1
    lines = [f"{report.path} ({report.arch}; symbols: {'yes' if report.has_symbols else 'no (stripped)'}; "
             f"DWARF: {'yes' if report.has_dwarf else 'no'}"
             f"{'; object files: yes' if report.objects else ''})",
             f"in memory {report.total} bytes = flash {report.flash} (text + rodata + data) "
             f"+ bss {report.kind_total('bss')}; static RAM {report.ram} (data + bss)", ""]
    width = max([len(c) for c in report.components] + [9]) + 2
    head = f"{'component':<{width}}" + "".join(f"{k:>9}" for k in SECTION_KINDS) + f"{'total':>9}{'%':>7}"
    lines += [head, "-" * len(head)]
    last_kind = None
    for c in report.ordered_components():
        kind = c.split()[0] if c.split()[0] in GROUPS else None
        if kind and kind != last_kind:
            lines.append(f"{kind + 's':<{width}}" + "".join(
                f"{sum(report.components[x].get(k, 0) for x in report.components if x.startswith(kind + ' ')):>9}"
                for k in SECTION_KINDS) + f"{sum(report.component_total(x) for x in report.components if x.startswith(kind + ' ')):>9}")
        last_kind = kind
        label = ("  " + c.split(" ", 1)[1]) if kind else c
        row = report.components[c]
        lines.append(f"{label:<{width}}" + "".join(f"{row.get(k, 0):>9}" for k in SECTION_KINDS)
                     + f"{report.component_total(c):>9}{100.0 * report.component_total(c) / total:>6.1f}%")
    lines.append("-" * len(head))
    lines.append(f"{'total':<{width}}" + "".join(f"{report.kind_total(k):>9}" for k in SECTION_KINDS)
                 + f"{report.total:>9}{100.0:>6.1f}%")
    if not report.has_dwarf and report.has_symbols and not report.objects:
        lines.append("")
        lines.append("no DWARF and no object files beside it: global symbols are attributed by name only; "
                     "build with -g for full attribution")
    if top:
        lines += ["", f"largest {top} symbols:"]
        for s in sorted(report.symbols, key=lambda s: (-s.attributed, s.name))[:top]:
            lines.append(f"  {s.attributed:>8}  {s.name}  [{s.component}, {s.section}]")
    return "\n".join(lines)


def diff_data(old: SizeReport, new: SizeReport) -> dict:
    """The change between two builds, by symbol (st_size, as bloat-o-meter
    counts) and by component."""
    a, b = _symbol_sizes(old), _symbol_sizes(new)
    rows = [{"name": n, "old": a.get(n), "new": b.get(n), "delta": b.get(n, 0) - a.get(n, 0)}
            for n in set(a) | set(b) if b.get(n, 0) != a.get(n, 0)]
    rows.sort(key=lambda r: (-r["delta"], r["name"]))
    comps = [{"name": c, "old": old.component_total(c), "new": new.component_total(c),
              "delta": new.component_total(c) - old.component_total(c)}
             for c in sorted(set(old.components) | set(new.components))
             if old.component_total(c) or new.component_total(c)]
    both = [r for r in rows if r["old"] is not None and r["new"] is not None]
    return {
        "old": str(old.path), "new": str(new.path),
        "added": sum(1 for r in rows if r["old"] is None),
        "removed": sum(1 for r in rows if r["new"] is None),
        "grown": sum(1 for r in both if r["delta"] > 0),
        "shrunk": sum(1 for r in both if r["delta"] < 0),
        "up": sum(r["delta"] for r in rows if r["delta"] > 0),
        "down": sum(r["delta"] for r in rows if r["delta"] < 0),
        "symbols_before": sum(a.values()), "symbols_after": sum(b.values()),
        "symbols": rows, "components": comps,
        "total_before": old.total, "total_after": new.total,
    }


def diff(old: SizeReport, new: SizeReport) -> str:
    """A bloat-o-meter style comparison of two builds, by symbol, then by
    component."""
    d = diff_data(old, new)
    out = [f"add/remove: {d['added']}/{d['removed']} grow/shrink: {d['grown']}/{d['shrunk']} "
           f"up/down: {d['up']}/{d['down']} ({d['up'] + d['down']})"]
    width = max([len(r["name"]) for r in d["symbols"]] + [20])
    out.append(f"{'function/object':<{width}} {'old':>8} {'new':>8} {'delta':>8}")
    for r in d["symbols"]:
        o, n = r["old"] if r["old"] is not None else "-", r["new"] if r["new"] is not None else "-"
        out.append(f"{r['name']:<{width}} {o:>8} {n:>8} {r['delta']:>+8}")
    before, after = d["symbols_before"], d["symbols_after"]
    chg = 100.0 * (after - before) / before if before else 0.0
    out.append(f"Total: Before={before}, After={after}, chg {chg:+.2f}%")
    out += ["", f"{'component':<28} {'old':>9} {'new':>9} {'delta':>9}"]
    out += [f"{c['name']:<28} {c['old']:>9} {c['new']:>9} {c['delta']:>+9}" for c in d["components"]]
    out.append(f"{'in memory':<28} {old.total:>9} {new.total:>9} {new.total - old.total:>+9}")
    return "\n".join(out)


def _symbol_sizes(report: SizeReport) -> Dict[str, int]:
    sizes: Dict[str, int] = {}
    for s in report.symbols:
        name = s.name if s.name not in sizes else f"{s.name} ({s.component})"
        sizes[name] = sizes.get(name, 0) + s.size
    return sizes


# ---- budget ----

class BudgetExceeded(UserError):
    exit_code = 1


def biggest(report: SizeReport, kinds: Iterable[str], n: int = 3) -> str:
    kinds = tuple(kinds)
    sizes = sorted(((sum(report.components[c].get(k, 0) for k in kinds), c) for c in report.components),
                   key=lambda t: (-t[0], t[1]))
    return ", ".join(f"{c} {b / 1024:.1f} KiB" for b, c in sizes[:n] if b)


def check_budget(report: SizeReport, profile) -> None:
    """Raise BudgetExceeded, at the profile's budget line, when the build
    takes more flash or static RAM than the profile allows."""
    if profile.arch != report.arch:
        raise UserError(f"{profile.path}:{profile.line('arch')}: the profile is for {profile.arch} but "
                        f"{report.path} is {report.arch}: its budget would not say much")
    for key, used, kinds, what in (("flash_kb", report.flash, ("text", "rodata", "data"), "flash (text + rodata + data)"),
                                   ("ram_kb", report.ram, ("data", "bss"), "static RAM (data + bss)")):
        limit = profile.get("budget", key)
        if limit is not None and used > limit * 1024:
            raise BudgetExceeded(
                f"{profile.path}:{profile.line('budget', key)}: budget.{key} is {limit} KiB but {report.path.name} "
                f"takes {used / 1024:.1f} KiB of {what}; biggest: {biggest(report, kinds)}. Drop features from the "
                f"profile or raise budget.{key}")


# ---- HTML ----

_COLORS = {"text": "#4e79a7", "rodata": "#f28e2b", "data": "#59a14f", "bss": "#bab0ac"}


def squarify(sizes: List[float], x: float, y: float, w: float, h: float) -> List[Tuple[float, float, float, float]]:
    """Rectangles for `sizes` (largest first) tiling x, y, w, h, as square
    as the squarified treemap layout (Bruls, Huizing, van Wijk) makes them."""
    total = sum(sizes)
    if not sizes or total <= 0:
        return []
    scale = w * h / total
    areas = [v * scale for v in sizes]
    rects: List[Tuple[float, float, float, float]] = []

    def worst(row: List[float], side: float) -> float:
        s = sum(row)
        return max(max(side * side * r / (s * s), (s * s) / (side * side * r)) for r in row)

    row: List[float] = []
    i = 0
    while i < len(areas):
        side = min(w, h)
        a = areas[i]
        if not row or worst(row + [a], side) <= worst(row, side):
            row.append(a)
            i += 1
            continue
        x, y, w, h = _lay_row(row, x, y, w, h, rects)
        row = []
    if row:
        _lay_row(row, x, y, w, h, rects)
    return rects


def _lay_row(row, x, y, w, h, rects):
    s = sum(row)
    if w >= h:  # a column on the left
        cw = s / h if h else 0
        yy = y
        for a in row:
            rects.append((x, yy, cw, a / cw if cw else 0))
            yy += a / cw if cw else 0
        return x + cw, y, w - cw, h
    rh = s / w if w else 0
    xx = x
    for a in row:
        rects.append((xx, y, a / rh if rh else 0, rh))
        xx += a / rh if rh else 0
    return x, y + rh, w, h - rh


def _treemap(report: SizeReport, width: int = 900, height: int = 420) -> str:
    comps = sorted((c for c in report.components if report.component_total(c) > 0),
                   key=lambda c: -report.component_total(c))
    palette = {"core": "#4e79a7", "collector": "#59a14f", "detector": "#e15759", "transport": "#f28e2b",
               "lib": "#76b7b2", THIRD_PARTY: "#b07aa1", TOOLCHAIN: "#9c755f", UNATTRIBUTED: "#bab0ac"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="11" role="img" aria-label="treemap of components">']
    for c, (x, y, w, h) in zip(comps, squarify([report.component_total(c) for c in comps], 0, 0, width, height)):
        color = palette.get(c, palette.get(c.split()[0], "#bab0ac"))
        label = f"{c} {report.component_total(c) / 1024:.1f} KiB"
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{color}" stroke="#fff">'
                   f'<title>{html.escape(label)}</title></rect>')
        if w > 6 * len(c) and h > 14:
            out.append(f'<text x="{x + 4:.1f}" y="{y + 13:.1f}" fill="#fff">{html.escape(c)}</text>')
            if h > 28:
                out.append(f'<text x="{x + 4:.1f}" y="{y + 26:.1f}" fill="#fff">'
                           f'{report.component_total(c) / 1024:.1f} KiB</text>')
    out.append("</svg>")
    return "\n".join(out)


def to_html(report: SizeReport) -> str:
    """One self-contained page: a treemap of the components, a stacked bar
    per component by section kind (inline SVG, no script, no external
    asset) and the table."""
    comps = report.ordered_components()
    width, bar_x, row_h = 900, 260, 22
    scale = (width - bar_x - 90) / max([report.component_total(c) for c in comps] + [1])
    height = row_h * len(comps) + 40
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12" role="img" aria-label="size by component">']
    for i, c in enumerate(comps):
        y = 10 + i * row_h
        svg.append(f'<text x="{bar_x - 8}" y="{y + 14}" text-anchor="end">{html.escape(c)}</text>')
        x = float(bar_x)
        for k in SECTION_KINDS:
            w = report.components[c].get(k, 0) * scale
            if w > 0:
                svg.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 6}" fill="{_COLORS[k]}">'
                           f'<title>{html.escape(c)} {k}: {report.components[c].get(k, 0)} bytes</title></rect>')
                x += w
        svg.append(f'<text x="{x + 6:.1f}" y="{y + 14}">{report.component_total(c) / 1024:.1f} KiB</text>')
    ly = height - 14
    for j, k in enumerate(SECTION_KINDS):
        svg.append(f'<rect x="{bar_x + j * 90}" y="{ly - 10}" width="12" height="12" fill="{_COLORS[k]}"/>'
                   f'<text x="{bar_x + j * 90 + 16}" y="{ly}">{k}</text>')
    svg.append("</svg>")
    rows = "".join(
        "<tr><td>" + html.escape(c) + "</td>" + "".join(f"<td>{report.components[c].get(k, 0)}</td>" for k in SECTION_KINDS)
        + f"<td>{report.component_total(c)}</td></tr>" for c in comps)
    rows += "<tr><th>total</th>" + "".join(f"<th>{report.kind_total(k)}</th>" for k in SECTION_KINDS) + \
        f"<th>{report.total}</th></tr>"
    title = html.escape(f"defender-iot size: {report.path.name} ({report.arch})")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}</style>"
            f"</head><body><h1>{title}</h1><p>{report.total} bytes in memory: flash {report.flash} "
            f"(text + rodata + data), static RAM {report.ram} (data + bss).</p>\n" + _treemap(report) +
            "\n<h2>By section kind</h2>\n" + "\n".join(svg) +
            "\n<table><tr><th>component</th>" + "".join(f"<th>{k}</th>" for k in SECTION_KINDS) +
            f"<th>total</th></tr>{rows}</table></body></html>\n")


def report_json(report: SizeReport) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=False)
