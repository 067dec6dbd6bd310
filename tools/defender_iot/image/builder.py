"""The test image: Debian's kernel and an initramfs with BusyBox, Dropbear,
iptables and the agent, assembled from Debian packages without Yocto.

The result is a directory holding `vmlinuz`, `initrd.gz` and `image.json`
(what the runner needs to boot it). Everything that goes in is hashed; when
the hash matches the directory's, nothing is rebuilt."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from defender_iot.build import build_agent
from defender_iot.errors import UserError
from defender_iot.features import repo_root
from defender_iot.image import elf, packages
from defender_iot.image.arches import ImageArch, image_arch
from defender_iot.image.cpio import Archive

# Bump when the layout changes in a way the inputs' hash does not see.
FORMAT = 1
ROOT_PASSWORD = "defender"        # the test image's root password (brute-force scenario)
MODULES = ("virtio_pci", "virtio_mmio", "virtio_net", "virtio_console",
           "ip_tables", "iptable_filter", "xt_tcpudp", "xt_conntrack")
CONFIG_PATH = "/etc/defender-iot/config.json"
MESSAGES_PATH = "/var/log/defender-iot/messages.jsonl"
AGENT_LOG = "/var/log/defender-iot/agent.log"
PAYLOAD_DIR = "/opt/defender-iot-tests"
PROMPT = "dfi-test# "

# Short cycles so scenarios see a periodic message within seconds; a product
# keeps the defaults (30, 120, 1440 minutes).
BASE_CONFIG = {
    "CollectorsCore_PriorityIntervals": "0.1,0.2,0.3",
    "Agent_Transport": "local",
    "Local_Path": MESSAGES_PATH,
}

INITTAB = """\
::sysinit:/etc/init.d/rcS
::respawn:/bin/cttyhack /bin/sh -l
::ctrlaltdel:/bin/poweroff -f
::shutdown:/etc/init.d/rcK
"""

RCS = """\
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /var/log/defender-iot /var/run /var/lib/defender-iot /root /tmp /run
mount -t devpts devpts /dev/pts
chmod 1777 /tmp
dmesg -n 1
for m in $(cat /etc/modules); do insmod /lib/modules/$m.ko || echo "rcS: insmod $m failed"; done
hostname -F /etc/hostname
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
for s in /etc/init.d/S??*; do "$s" start; done
echo "defender-iot-image: up after $(cut -d' ' -f1 /proc/uptime) s"
"""

RCK = """\
#!/bin/sh
for s in $(ls -r /etc/init.d/S??*); do "$s" stop; done
"""

S10_SYSLOG = """\
#!/bin/sh
# Dropbear logs through syslog; the agent's login collector reads this file.
case "$1" in
start) syslogd -O /var/log/messages ;;
stop) killall syslogd ;;
esac
"""

S40_DROPBEAR = """\
#!/bin/sh
# -R: make host keys on first use (as a product does on first boot)
case "$1" in
start) mkdir -p /etc/dropbear; dropbear -R -p 22 -P /var/run/dropbear.pid ;;
stop) kill $(cat /var/run/dropbear.pid) ;;
esac
"""

S50_AGENT = f"""\
#!/bin/sh
# The agent as a product starts it: from an init script, with its config file.
PID=/var/run/defender-iot-agent.pid
case "$1" in
start)
	/usr/bin/defender-iot-agent --config {CONFIG_PATH} >>{AGENT_LOG} 2>&1 &
	echo $! > $PID ;;
stop)
	[ -f $PID ] && kill $(cat $PID)
	while [ -f $PID ] && kill -0 $(cat $PID) 2>/dev/null; do sleep 0.2; done
	rm -f $PID ;;
restart) "$0" stop; "$0" start ;;
esac
"""


@dataclass
class Image:
    """A built image, as the runner needs it. A user's own image (Yocto,
    Buildroot) is described by the same fields: its kernel, and an initrd
    or a `disk` (root filesystem image), and how its console logs in."""
    arch: str
    directory: Path
    kernel: Path
    initrd: Optional[Path]
    console: str
    prompt: str = PROMPT
    root_password: str = ROOT_PASSWORD
    config: Dict[str, object] = field(default_factory=dict)
    digest: str = ""
    disk: Optional[Path] = None
    username: str = "root"
    login_prompt: str = "login: "
    ready_banner: str = "defender-iot-image: up"
    payload_dir: str = PAYLOAD_DIR
    # How the image's init system restarts the agent after its config changed.
    agent_restart: str = "/etc/init.d/S50defender-iot-agent restart"

    @property
    def arch_info(self) -> ImageArch:
        return image_arch(self.arch)

    def save(self) -> None:
        d = asdict(self)
        for k in ("directory", "kernel", "initrd", "disk"):
            d[k] = None if d[k] is None else str(d[k])
        (self.directory / "image.json").write_text(json.dumps(d, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "Image":
        try:
            d = json.loads((directory / "image.json").read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{directory}/image.json: not a built image ({e}); run `defender-iot image build`")
        for k in ("directory", "kernel", "initrd", "disk"):
            d[k] = None if d.get(k) is None else Path(d[k])
        return cls(**d)


def default_dir(arch: str) -> Path:
    return repo_root() / "build" / f"image-{arch}"


def compile_payloads(arch: ImageArch, out: Path) -> Dict[str, Path]:
    """The attack stand-ins of tests/integration/payloads, for the target."""
    src = repo_root() / "tests" / "integration" / "payloads"
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    for c in sorted(src.glob("*.c")):
        binary = out / {"miner": "xmrig"}.get(c.stem, c.stem)
        if not binary.exists() or binary.stat().st_mtime < c.stat().st_mtime:
            if shutil.which(arch.cc) is None:
                raise UserError(f"{arch.cc} not found: install the cross compiler (scripts/apt/cross.txt)")
            proc = subprocess.run([arch.cc, "-Os", "-s", "-Wall", "-Wextra", "-o", str(binary), str(c)],
                                  stderr=subprocess.PIPE, text=True)
            if proc.returncode != 0:
                raise UserError(f"{arch.cc} {c}: {proc.stderr.strip()}")
        result[binary.name] = binary
    return result


def _password_hash(password: str, salt: str) -> str:
    proc = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, password], stdout=subprocess.PIPE,
                          text=True, check=True)
    return proc.stdout.strip()


def build_image(arch_name: str = "x86_64", *, out_dir: Optional[Path] = None,
                agent_options: Optional[Mapping[str, bool | str]] = None,
                agent_binary: Optional[Path] = None, config: Optional[Mapping[str, object]] = None,
                log=print) -> Image:
    """Build (or reuse) the image for `arch_name`. `agent_binary` defaults to
    build_agent(agent_options, arch=...); `config` is merged over BASE_CONFIG."""
    arch = image_arch(arch_name)
    out = out_dir or default_dir(arch.name)
    out.mkdir(parents=True, exist_ok=True)
    if agent_binary is None:
        log(f"image: building the agent for {arch.name}")
        agent_binary = build_agent(agent_options, arch=arch.name).binary
    log(f"image: fetching Debian packages for {arch.deb} (cache: {packages.cache_dir()})")
    pkgs = packages.fetch_all(arch)
    payloads = compile_payloads(arch, out / "payloads")
    cfg = {**BASE_CONFIG, **(config or {})}

    h = hashlib.sha256()
    h.update(f"{FORMAT} {sorted(pkgs)} {json.dumps(cfg, sort_keys=True)}".encode())
    for f in [Path(__file__), Path(elf.__file__), agent_binary, *payloads.values()]:
        h.update(f.read_bytes())
    digest = h.hexdigest()[:16]
    try:
        old = Image.load(out)
        if old.digest == digest and old.initrd.exists() and old.kernel.exists():
            log(f"image: {out} is up to date ({digest})")
            return old
    except UserError:
        pass

    kdir = pkgs["<kernel>"]
    vmlinuz = next((kdir / "boot").glob("vmlinuz-*"))
    modules_dir = next((kdir / "lib" / "modules").iterdir())
    a = Archive()
    for d in ("proc", "sys", "dev", "tmp", "root", "var/log", "var/run", "etc/init.d"):
        a.dir(d)
    a.chardev("dev/console", 5, 1)
    a.chardev("dev/null", 1, 3, 0o666)

    bb = pkgs["busybox-static"] / "bin" / "busybox"
    a.copy("bin/busybox", bb, 0o755)
    a.symlink("init", "/bin/busybox")
    a.symlink("sbin/init", "/bin/busybox")
    a.symlink("bin/sh", "busybox")

    # Dynamically linked programs and the libraries they need: the target's
    # own packages first, then the host's multiarch libraries (what the
    # agent was linked against).
    search: List[Path] = []
    for p in pkgs.values():
        search += [p / "lib" / arch.triplet, p / "usr" / "lib" / arch.triplet]
    search += [Path("/usr/lib") / arch.triplet, Path("/lib") / arch.triplet]
    search = [s for s in dict.fromkeys(search) if s.is_dir()]
    programs = {
        "usr/bin/defender-iot-agent": agent_binary,
        "usr/sbin/dropbear": pkgs["dropbear-bin"] / "usr" / "sbin" / "dropbear",
        "usr/sbin/xtables-legacy-multi": pkgs["iptables"] / "usr" / "sbin" / "xtables-legacy-multi",
    }
    xt_dir = next(p for p in search if (p / "xtables").is_dir()) / "xtables"
    xt_exts = sorted(xt_dir.glob("lib*.so"))
    libs, interp = elf.runtime_closure([*programs.values(), *payloads.values(), *xt_exts], search)
    if interp is None:
        raise UserError(f"{agent_binary}: no program interpreter; is it a {arch.name} dynamic executable?")
    for path, src in programs.items():
        a.copy(path, src, 0o755)
    for name in ("iptables", "iptables-save", "iptables-restore"):
        a.symlink(f"usr/sbin/{name}", "xtables-legacy-multi")
    for ext in xt_exts:
        a.copy(f"usr/lib/{arch.triplet}/xtables/{ext.name}", ext)
    for soname, src in libs.items():
        a.copy(f"lib/{arch.triplet}/{soname}", src, 0o755)
    ld = next(p / Path(interp).name for p in search if (p / Path(interp).name).exists())
    a.copy(interp, ld, 0o755)
    for name, src in payloads.items():
        a.copy(f"{PAYLOAD_DIR}/{name}", src, 0o755)

    mods = elf.module_load_order(modules_dir, MODULES)
    for m in mods:
        a.copy(f"lib/modules/{m.stem}.ko", m)
    a.file("etc/modules", "".join(m.stem + "\n" for m in mods))

    a.file("etc/inittab", INITTAB)
    a.file("etc/init.d/rcS", RCS, 0o755)
    a.file("etc/init.d/rcK", RCK, 0o755)
    a.file("etc/init.d/S10syslogd", S10_SYSLOG, 0o755)
    a.file("etc/init.d/S40dropbear", S40_DROPBEAR, 0o755)
    a.file("etc/init.d/S50defender-iot-agent", S50_AGENT, 0o755)
    a.file("etc/hostname", f"dfi-{arch.name}\n")
    a.file("etc/machine-id", hashlib.sha256(f"dfi-{arch.name}".encode()).hexdigest()[:32] + "\n")
    a.file("etc/os-release", 'ID=debian-busybox\nNAME="defender-iot test image"\nVERSION_ID="1"\n'
           f'PRETTY_NAME="defender-iot test image ({arch.name}, Debian packages)"\n')
    a.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    a.file("etc/group", "root:x:0:\nnogroup:x:65534:\n")
    a.file("etc/shadow", f"root:{_password_hash(ROOT_PASSWORD, 'dfitest0')}:19000:0:99999:7:::\n"
           "nobody:*:19000:0:99999:7:::\n", 0o600)
    a.file("etc/shells", "/bin/sh\n")
    a.file("etc/profile", f"export PS1='{PROMPT}'\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n")
    a.file(CONFIG_PATH.lstrip("/"), json.dumps(cfg, indent=2) + "\n", 0o600)

    initrd = out / "initrd.gz"
    a.write_gz(initrd)
    kernel = out / "vmlinuz"
    tmp = out / f".vmlinuz.{os.getpid()}"
    shutil.copyfile(vmlinuz, tmp)
    tmp.replace(kernel)
    image = Image(arch=arch.name, directory=out, kernel=kernel, initrd=initrd, console=arch.console,
                  config=cfg, digest=digest)
    image.save()
    log(f"image: wrote {initrd} ({initrd.stat().st_size // 1024} KiB) and {kernel}")
    return image
