"""Fixtures for the QEMU-booted scenarios: one guest per architecture per
session, with the emulated hub, a fake mining pool and a reverse-shell
listener on the host, reached from the guest through restricted user
networking.

Architectures: `--dfi-arch x86_64,aarch64` (default: $DFI_ARCHES, else
x86_64 and aarch64, as in CI). A failing test gets the guest's console and the hub's log in its
report."""

from __future__ import annotations

import os

import pytest

from defender_iot.image.builder import build_image
from defender_iot.image.lab import LabgridGuest
from defender_iot.image.qemu import Guest
from defender_iot.image.testbed import Testbed, qemu_testbed


def pytest_addoption(parser):
    parser.addoption("--dfi-arch", default=os.environ.get("DFI_ARCHES", "x86_64,aarch64"),
                     help="comma-separated architectures to boot for tests/integration (x86_64,aarch64,armhf)")
    parser.addoption("--dfi-driver", choices=("labgrid", "pexpect"), default=os.environ.get("DFI_DRIVER", "labgrid"),
                     help="drive the guest with labgrid's QEMUDriver+ShellDriver (default) or a pexpect console")


def pytest_generate_tests(metafunc):
    if "testbed" in metafunc.fixturenames:
        arches = [a for a in metafunc.config.getoption("--dfi-arch").split(",") if a]
        metafunc.parametrize("testbed", arches, indirect=True, scope="session")


@pytest.fixture(scope="session")
def testbed(request, agent_factory, tmp_path_factory):
    arch = request.param
    image = build_image(arch, agent_binary=agent_factory(None, arch=arch).binary, log=lambda m: None)
    driver = LabgridGuest if request.config.getoption("--dfi-driver") == "labgrid" else Guest
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
