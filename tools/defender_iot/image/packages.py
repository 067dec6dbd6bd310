"""Debian packages for the test image: resolved with apt-cache, fetched with
apt-get download into a cache directory and unpacked once each.

Nothing here installs anything on the host: packages of the target
architecture are only downloaded and unpacked under the cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from defender_iot.errors import UserError
from defender_iot.image.arches import ImageArch

# What the image runs besides the agent: BusyBox (shell, init, syslogd, nc),
# Dropbear (the SSH server that brute-force tests attack) and iptables
# (hardening checks). Their library dependencies are resolved by apt.
USERLAND = ("busybox-static", "dropbear-bin", "iptables")


def cache_dir() -> Path:
    """Where downloads are kept between builds (CI caches this directory)."""
    env = os.environ.get("DEFENDER_IOT_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "defender-iot"
    return base


@dataclass(frozen=True)
class Deb:
    package: str
    version: str
    arch: str
    filename: str    # basename in the cache

    @property
    def path(self) -> Path:
        return cache_dir() / "debs" / self.filename


def _apt(cmd: List[str]) -> str:
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise UserError(f"{cmd[0]} not found: the image builder needs Debian's apt tools") from None
    if proc.returncode != 0:
        hint = ""
        if "Unable to locate package" in proc.stderr or "No packages found" in proc.stderr:
            hint = (" (is the architecture enabled? `dpkg --add-architecture <arch> && apt-get update`,"
                    " which scripts/setup.sh does)")
        raise UserError(f"{' '.join(cmd[:3])} ... failed{hint}: {proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout


def _qualified(name: str, arch: ImageArch) -> str:
    return name if ":" in name else f"{name}:{arch.deb}"


def kernel_package(arch: ImageArch) -> str:
    """The versioned kernel package the flavour's metapackage points at (the
    ABI number changes with every security update, so it is never written down)."""
    out = _apt(["apt-cache", "depends", _qualified(arch.kernel_meta, arch)])
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1).split(":")[0]
    raise UserError(f"apt-cache depends {arch.kernel_meta}: no linux-image dependency found")


def userland_packages(arch: ImageArch, roots: Iterable[str] = USERLAND) -> List[str]:
    out = _apt(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                "--no-breaks", "--no-replaces", "--no-enhances", *[_qualified(r, arch) for r in roots]])
    names = set()
    for line in out.splitlines():
        if line.startswith((" ", "<")):
            continue   # dependency lines and virtual packages
        names.add(line.strip())   # as apt names it: "libc6:arm64", or "netbase" (Architecture: all)
    return sorted(names)


def _show(names: List[str], arch: ImageArch) -> List[Deb]:
    """The candidate version of each package, with its file name."""
    out = _apt(["apt-cache", "show", "--no-all-versions", *names])
    debs = []
    for stanza in out.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
        if "Package" in fields and "Version" in fields:
            # apt-get download's name, which keeps the epoch (as %3a)
            name = f"{fields['Package']}_{fields['Version'].replace(':', '%3a')}_{fields['Architecture']}.deb"
            debs.append(Deb(fields["Package"], fields["Version"], fields["Architecture"], name))
    missing = {n.split(":")[0] for n in names} - {d.package for d in debs}
    if missing:
        raise UserError(f"apt-cache show: no candidate for {', '.join(sorted(missing))} ({arch.deb})")
    return debs


def download(debs: List[Deb]) -> None:
    """Download what is not cached yet."""
    todo = [d for d in debs if not d.path.is_file()]
    if todo:
        dest = cache_dir() / "debs"
        dest.mkdir(parents=True, exist_ok=True)
        specs = [f"{d.package}:{d.arch}={d.version}" if d.arch != "all" else f"{d.package}={d.version}"
                 for d in todo]
        proc = subprocess.run(["apt-get", "download", "-q", *specs], cwd=dest, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise UserError(f"apt-get download {' '.join(specs)} failed:\n{proc.stdout[-2000:]}")
        for d in todo:
            if not d.path.is_file():
                raise UserError(f"apt-get download did not produce {d.path}")


def unpack(deb: Deb) -> Path:
    """The package's files, unpacked once under the cache."""
    dest = cache_dir() / "unpacked" / deb.filename[:-len(".deb")]
    if not (dest / ".done").exists():
        tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        proc = subprocess.run(["dpkg-deb", "-x", str(deb.path), str(tmp)], stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise UserError(f"dpkg-deb -x {deb.path}: {proc.stderr.strip()} (delete it to download again)")
        (tmp / ".done").touch()
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return dest


def _apt_state() -> str:
    """Changes whenever `apt-get update` brings new package lists."""
    lists = Path("/var/lib/apt/lists")
    h = hashlib.sha256()
    for f in sorted(lists.glob("*_Packages*")):
        st = f.stat()
        h.update(f"{f.name} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def resolve(arch: ImageArch) -> Tuple[str, List[Deb]]:
    """(kernel package, every .deb), remembered until the apt lists change:
    apt-cache takes seconds per call on machines without a pkgcache.bin."""
    memo = cache_dir() / f"resolved-{arch.name}.json"
    state = _apt_state()
    try:
        saved = json.loads(memo.read_text())
        if saved["apt_state"] == state:
            return saved["kernel"], [Deb(**d) for d in saved["debs"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    kernel = kernel_package(arch)
    debs = _show([_qualified(kernel, arch), *userland_packages(arch)], arch)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"apt_state": state, "kernel": kernel, "debs": [asdict(d) for d in debs]}))
    return kernel, debs


def fetch_all(arch: ImageArch) -> Dict[str, Path]:
    """Package name -> unpacked directory, for the kernel and the userland
    ("<kernel>" names the kernel's)."""
    kernel, debs = resolve(arch)
    download(debs)
    result = {d.package: unpack(d) for d in debs}
    result["<kernel>"] = result[kernel]
    return result
