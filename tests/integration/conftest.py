"""Fixtures for the QEMU-booted scenarios: one guest per architecture per
session, with the emulated hub, a fake mining pool and a reverse-shell
listener on the host, reached from the guest through restricted user
networking.

Architectures: `--dfi-arch x86_64,aarch64` (default: $DFI_ARCHES, else
x86_64). A failing test gets the guest's console and the hub's log in its
report."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from defender_iot.hub import HubProcess  # noqa: E402
from defender_iot.image.builder import build_image  # noqa: E402
from defender_iot.image.qemu import HUB_ADDRESS, POOL_ADDRESS, SHELL_LISTENER_ADDRESS, Guest  # noqa: E402
from testbed import MODULE, FakePool, ShellListener, Testbed  # noqa: E402

CA_PATH = "/etc/defender-iot/hub-ca.pem"
CONNSTR_PATH = "/etc/defender-iot/connection_string.txt"


def pytest_addoption(parser):
    parser.addoption("--dfi-arch", default=os.environ.get("DFI_ARCHES", "x86_64"),
                     help="comma-separated architectures to boot for tests/integration (x86_64,aarch64,armhf)")


def pytest_generate_tests(metafunc):
    if "testbed" in metafunc.fixturenames:
        arches = [a for a in metafunc.config.getoption("--dfi-arch").split(",") if a]
        metafunc.parametrize("testbed", arches, indirect=True, scope="session")


def hub_config() -> dict:
    return {"Agent_Transport": "iothub", "IothubModule_ConnectionStringFile": CONNSTR_PATH,
            "IothubModule_CaFile": CA_PATH,
            "IothubModule_ConnectAddress": f"{HUB_ADDRESS[0]}:{HUB_ADDRESS[1]}"}


@pytest.fixture(scope="session")
def testbed(request, agent_factory, tmp_path_factory):
    arch = request.param
    image = build_image(arch, agent_binary=agent_factory(None, arch=arch).binary, log=lambda m: None)
    work = tmp_path_factory.mktemp(f"qemu-{arch}")
    pool, listener = FakePool(), ShellListener()
    hub = HubProcess(work / "hub")
    hub.__enter__()
    device = f"dfi-{arch}"
    guest = Guest(image, work / "guest", config=hub_config(),
                  guestfwd={HUB_ADDRESS: hub.mqtt_port, POOL_ADDRESS: pool.port,
                            SHELL_LISTENER_ADDRESS: listener.port},
                  files={CONNSTR_PATH: (hub.connection_string(device, MODULE) + "\n").encode(),
                         CA_PATH: hub.ca.read_bytes()})

    def restart_hub(seconds, during):
        hub.stop()
        stopped = time.monotonic()
        try:
            during()
            time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
        finally:
            hub.start()

    def diagnostics():
        out = {"console (last 8 KiB)": guest.console_text()[-8192:], "hub log": hub.log_tail(60)}
        if guest.alive():
            try:
                out["agent log in the guest"] = guest.run("tail -n 60 /var/log/defender-iot/agent.log",
                                                          timeout=20)[1]
            except AssertionError as e:
                out["agent log in the guest"] = str(e)
        return out

    try:
        guest.start()
        bed = Testbed(arch=arch, target=guest, hub=hub, device=device, ssh=("127.0.0.1", guest.ssh_port),
                      root_password=image.root_password, pool=pool, pool_address=POOL_ADDRESS,
                      listener=listener, listener_address=SHELL_LISTENER_ADDRESS,
                      restart_hub=restart_hub, diagnostics=diagnostics)
        yield bed
    finally:
        guest.stop()
        hub.__exit__(None, None, None)
        pool.shutdown()
        listener.close()


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
