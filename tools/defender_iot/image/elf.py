"""What a dynamically linked program needs to run in the image: its
dynamic loader and every shared library it names, recursively. Also reads
kernel modules' dependencies (the .deb has no modules.dep and the host may
have no kmod)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from defender_iot.errors import UserError


def needed_and_interp(path: Path) -> Tuple[List[str], Optional[str]]:
    with open(path, "rb") as f:
        elf = ELFFile(f)
        interp = None
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_INTERP":
                interp = seg.get_interp_name()
        needed: List[str] = []
        for sec in elf.iter_sections():
            if isinstance(sec, DynamicSection):
                needed += [t.needed for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
        return needed, interp


def runtime_closure(binaries: Iterable[Path], search: Sequence[Path]) -> Tuple[Dict[str, Path], Optional[str]]:
    """(soname -> file providing it, interpreter path) for every library the
    binaries need, directly or through other libraries."""
    libs: Dict[str, Path] = {}
    interp: Optional[str] = None
    todo = list(binaries)
    while todo:
        binary = todo.pop()
        needed, i = needed_and_interp(binary)
        interp = interp or i
        for soname in needed:
            if soname in libs:
                continue
            found = next((d / soname for d in search if (d / soname).exists()), None)
            if found is None:
                raise UserError(f"{binary.name} needs {soname}, found in none of: {', '.join(map(str, search))}"
                                " (install the target architecture's library package, see scripts/apt/)")
            libs[soname] = found
            todo.append(found.resolve())
    return libs, interp


def modinfo(path: Path) -> Dict[str, str]:
    with open(path, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".modinfo")
        data = sec.data() if sec is not None else b""
    info: Dict[str, str] = {}
    for item in data.split(b"\0"):
        if b"=" in item:
            k, v = item.decode(errors="replace").split("=", 1)
            info.setdefault(k, v)
    return info


def module_load_order(modules_dir: Path, wanted: Sequence[str]) -> List[Path]:
    """The .ko files for `wanted` and their dependencies, each after the
    modules it depends on. Built-in modules and ones this kernel lacks are
    left out (a flavour may build virtio_pci in, another may not have it)."""
    builtin = set()
    bfile = modules_dir / "modules.builtin"
    if bfile.exists():
        builtin = {Path(line).stem.replace("-", "_") for line in bfile.read_text().split()}
    files = {p.stem.replace("-", "_"): p for p in modules_dir.rglob("*.ko")}
    order: List[Path] = []
    seen = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin or name not in files:
            return
        seen.add(name)
        deps = modinfo(files[name]).get("depends", "")
        for dep in filter(None, deps.split(",")):
            visit(dep)
        order.append(files[name])

    for w in wanted:
        visit(w)
    return order
