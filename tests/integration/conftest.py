"""Fixtures for the QEMU-booted scenarios: one guest per architecture per
session, with the emulated hub, a fake mining pool and a reverse-shell
listener on the host, reached from the guest through restricted user
networking.

Architectures: `--dfi-arch x86_64,aarch64` (default: $DFI_ARCHES, else
x86_64 and aarch64, as in CI). A failing test gets the guest's console and the hub's log in its
report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from defender_iot.image.arches import image_arch
from defender_iot.image.builder import Image, build_image
from defender_iot.image.lab import LabgridGuest
from defender_iot.image.qemu import Guest
from defender_iot.image.testbed import Testbed, qemu_testbed


def pytest_addoption(parser):
    parser.addoption("--dfi-arch", default=os.environ.get("DFI_ARCHES", "x86_64,aarch64"),
                     help="comma-separated architectures to boot for tests/integration (x86_64,aarch64,armhf)")
    parser.addoption("--dfi-driver", choices=("labgrid", "pexpect"), default=os.environ.get("DFI_DRIVER", "labgrid"),
                     help="drive the guest with labgrid's QEMUDriver+ShellDriver (default) or a pexpect console")
    g = parser.getgroup("dfi-own-image", "run the scenarios on your own Yocto/Buildroot image (labgrid driver)")
    g.addoption("--dfi-kernel", help="your kernel (instead of building the test image); give one --dfi-arch")
    g.addoption("--dfi-initrd", help="your initramfs (the run's agent config is appended to it)")
    g.addoption("--dfi-disk", help="or your root filesystem image (booted as /dev/vda; config pushed over the console)")
    g.addoption("--dfi-prompt", default="root@.*:~# ", help="the shell prompt (a regular expression)")
    g.addoption("--dfi-login-prompt", default=" login: ")
    g.addoption("--dfi-username", default="root")
    g.addoption("--dfi-password", default="", help="root's password (the brute-force scenario logs in with it)")
    g.addoption("--dfi-ready", default="", help="a console line that says init is done (optional)")
    g.addoption("--dfi-agent-restart", default="/etc/init.d/defender-iot-agent restart",
                help="how the image restarts the agent after its config changed (disk images)")


def pytest_generate_tests(metafunc):
    if "testbed" in metafunc.fixturenames:
        arches = [a for a in metafunc.config.getoption("--dfi-arch").split(",") if a]
        metafunc.parametrize("testbed", arches, indirect=True, scope="session")


@pytest.fixture(scope="session")
def testbed(request, agent_factory, tmp_path_factory):
    arch, opt = request.param, request.config.getoption
    driver = LabgridGuest if opt("--dfi-driver") == "labgrid" else Guest
    if opt("--dfi-kernel"):
        path = lambda o: Path(opt(o)).resolve() if opt(o) else None  # noqa: E731
        image = Image(arch=arch, directory=tmp_path_factory.mktemp("own-image"), kernel=path("--dfi-kernel"),
                      initrd=path("--dfi-initrd"), disk=path("--dfi-disk"), console=image_arch(arch).console,
                      prompt=opt("--dfi-prompt"), login_prompt=opt("--dfi-login-prompt"),
                      username=opt("--dfi-username"), root_password=opt("--dfi-password"),
                      ready_banner=opt("--dfi-ready"), agent_restart=opt("--dfi-agent-restart"),
                      config={"CollectorsCore_PriorityIntervals": "0.1,0.2,0.3"})
        driver = LabgridGuest
    else:
        image = build_image(arch, agent_binary=agent_factory(None, arch=arch).binary, log=lambda m: None)
    with qemu_testbed(image, tmp_path_factory.mktemp(f"qemu-{arch}"), driver=driver) as bed:
        yield bed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    bed = item.funcargs.get("testbed") if hasattr(item, "funcargs") else None
    if isinstance(bed, Testbed) and bed.diagnostics is not None:
        for name, text in bed.diagnostics().items():
            rep.sections.append((f"{bed.arch}: {name}", text))
