"""What differs between the test image's target architectures: Debian's
names for them, the kernel flavour, and how QEMU boots them. Every other
module reads this one table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from defender_iot.errors import UserError


@dataclass(frozen=True)
class ImageArch:
    name: str            # the toolkit's name (build_agent's arch)
    deb: str             # Debian architecture
    triplet: str         # multiarch triplet (/usr/lib/<triplet>)
    kernel_meta: str     # the metapackage that names the current kernel ABI
    qemu: str            # qemu-system binary
    machine: Tuple[str, ...]   # -M/-cpu arguments
    console: str         # kernel console device
    nic: str             # QEMU network device model
    cc: str              # C compiler for static test payloads


ARCHES = {
    # The cloud flavours boot in 3-5 s under TCG (LZ4 / raw Image); armhf has
    # no cloud flavour and armmp-lpae is the one that runs on `-M virt`.
    "x86_64": ImageArch("x86_64", "amd64", "x86_64-linux-gnu", "linux-image-cloud-amd64",
                        "qemu-system-x86_64", (), "ttyS0", "virtio-net-pci,romfile=", "gcc"),
    # cortex-a57: `-cpu max` emulates pointer authentication and is 4-5x slower.
    "aarch64": ImageArch("aarch64", "arm64", "aarch64-linux-gnu", "linux-image-cloud-arm64",
                         "qemu-system-aarch64", ("-M", "virt", "-cpu", "cortex-a57"), "ttyAMA0",
                         "virtio-net-device", "aarch64-linux-gnu-gcc"),
    "armhf": ImageArch("armhf", "armhf", "arm-linux-gnueabihf", "linux-image-armmp-lpae",
                       "qemu-system-arm", ("-M", "virt", "-cpu", "cortex-a15"), "ttyAMA0",
                       "virtio-net-device", "arm-linux-gnueabihf-gcc"),
}


def image_arch(name: str) -> ImageArch:
    try:
        return ARCHES[name]
    except KeyError:
        raise UserError(f"unknown image architecture '{name}' (expected one of {', '.join(ARCHES)})") from None
