"""The test image builder: what goes into the initramfs, module order,
and the cache (a rebuild with nothing changed reuses the image)."""

from __future__ import annotations

import gzip
import sys
import subprocess
import time

import pytest

from defender_iot.image import elf, packages
from defender_iot.image.arches import image_arch
from defender_iot.image.builder import build_image
from defender_iot.image.cpio import Archive


def cpio_list(data: bytes) -> list:
    return subprocess.run(["cpio", "-it", "--quiet"], input=data, stdout=subprocess.PIPE, check=True).stdout.decode().split()


def test_cpio_writer_output_is_read_by_gnu_cpio(tmp_path):
    a = Archive()
    a.file("etc/x/y.conf", "hello\n", 0o600)
    a.symlink("bin/sh", "busybox")
    a.chardev("dev/console", 5, 1)
    out = tmp_path / "a.gz"
    a.write_gz(out)
    names = cpio_list(gzip.decompress(out.read_bytes()))
    assert names == ["bin", "bin/sh", "dev", "dev/console", "etc", "etc/x", "etc/x/y.conf"]
    data = subprocess.run(["cpio", "-i", "--quiet", "--to-stdout", "etc/x/y.conf"],
                          input=gzip.decompress(out.read_bytes()), stdout=subprocess.PIPE, check=True).stdout
    assert data == b"hello\n"
    a.write_gz(tmp_path / "b.gz")
    assert (tmp_path / "b.gz").read_bytes() == out.read_bytes(), "same inputs must give the same bytes"


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_image_contents_and_rebuild_is_cached(arch, agent_factory, tmp_path):
    binary = agent_factory(None, arch=arch).binary
    image = build_image(arch, out_dir=tmp_path / "img", agent_binary=binary, log=lambda m: None)
    names = set(cpio_list(gzip.decompress(image.initrd.read_bytes())))
    for need in ("init", "bin/busybox", "usr/bin/defender-iot-agent", "usr/sbin/dropbear", "usr/sbin/iptables",
                 "etc/init.d/S50defender-iot-agent", "etc/defender-iot/config.json", "lib/modules/virtio_net.ko",
                 "opt/defender-iot-tests/xmrig", "opt/defender-iot-tests/botnet"):
        assert need in names, f"{need} missing from the {arch} initramfs"
    triplet = image_arch(arch).triplet
    for lib in ("libcjson.so.1", "libmosquitto.so.1", "libssl.so.3", "libc.so.6"):
        assert f"lib/{triplet}/{lib}" in names, f"{lib} missing"
    start = time.monotonic()
    again = build_image(arch, out_dir=tmp_path / "img", agent_binary=binary, log=lambda m: None)
    assert again.digest == image.digest
    assert time.monotonic() - start < 10, "a rebuild with nothing changed must reuse the image"


def test_modules_load_after_their_dependencies():
    arch = image_arch("x86_64")
    kdir = packages.fetch_all(arch)["<kernel>"]
    mods = [m.stem for m in elf.module_load_order(next((kdir / "lib" / "modules").iterdir()),
                                                   ["virtio_net", "iptable_filter"])]
    assert mods.index("virtio_ring") < mods.index("virtio_net") and mods.index("virtio") < mods.index("virtio_net")
    assert mods.index("net_failover") < mods.index("virtio_net")
    assert mods.index("x_tables") < mods.index("ip_tables") < mods.index("iptable_filter")


def test_cli_build_then_run_prints_a_restricted_tcg_command(agent_factory, tmp_path):
    import json
    from defender_iot.cli import main
    binary = agent_factory(None).binary
    assert main(["image", "build", "--arch", "x86_64", "--agent", str(binary), "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "image.json").read_text())["arch"] == "x86_64"
    out = subprocess.run([sys.executable, "-m", "defender_iot.cli", "image", "run", "--image", str(tmp_path),
                          "--hub-port", "18883", "--print"], stdout=subprocess.PIPE, text=True, check=True).stdout
    assert "-accel tcg" in out and "restrict=on" in out
    assert "guestfwd=tcp:10.0.2.100:8883-cmd:socat - TCP:127.0.0.1:18883" in out
