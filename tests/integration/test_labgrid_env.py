"""The labgrid environments: the templates under tests/labgrid load in
labgrid and bind the drivers the scenarios use; the generated QEMU
environment boots the test image to a shell."""

from __future__ import annotations

from pathlib import Path

import pytest

from defender_iot.image.builder import build_image
from defender_iot.image.lab import LabgridGuest, qemu_env
from defender_iot.image.testbed import push_payloads

TEMPLATES = Path(__file__).resolve().parents[1] / "labgrid"


@pytest.fixture
def lg_vars(monkeypatch):
    for k, v in dict(LG_QEMU="/usr/bin/qemu-system-aarch64", LG_MACHINE="virt", LG_CPU="cortex-a57",
                     LG_CONSOLE="ttyAMA0", LG_KERNEL="/dev/null", LG_INITRD="/dev/null", LG_SSH_PORT="2222",
                     LG_HUB_PORT="8883", LG_SERIAL="/dev/null", LG_PROMPT="root@dev:~# ",
                     LG_PASSWORD="x").items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("name", ["qemu-image.yaml", "board.yaml"])
def test_templates_load_and_offer_a_shell(name, lg_vars):
    from labgrid import Environment
    from labgrid.driver import ShellDriver
    target = Environment(str(TEMPLATES / name)).get_target("main")
    shell = target.get_driver(ShellDriver, activate=False)
    assert shell.username == "root"
    if name == "qemu-image.yaml":
        q = target.get_driver("QEMUDriver", activate=False)
        assert "restrict=on" in q.nic and "-initrd /dev/null" in q.extra_args and q.machine == "virt"


def test_generated_environment_is_restricted_and_has_the_initrd(tmp_path):
    from defender_iot.image.builder import Image
    image = Image(arch="x86_64", directory=tmp_path, kernel=tmp_path / "k", initrd=tmp_path / "i", console="ttyS0")
    env = qemu_env(image, tmp_path / "run.gz", guestfwd={("10.0.2.100", 8883): 4000}, ssh_port=2200)
    q = env["targets"]["dfi-x86_64"]["drivers"]["QEMUDriver"]
    assert q["nic"].startswith("user,model=virtio-net-pci,restrict=on,")
    assert "guestfwd=tcp:10.0.2.100:8883-cmd:socat - TCP:127.0.0.1:4000" in q["nic"]
    assert f"-initrd {tmp_path / 'run.gz'}" in q["extra_args"] and "-accel tcg" in q["extra_args"]


@pytest.mark.qemu
def test_labgrid_boots_the_image_to_a_shell(agent_factory, tmp_path):
    image = build_image("x86_64", agent_binary=agent_factory(None).binary, log=lambda m: None)
    with LabgridGuest(image, tmp_path, files={"/etc/marker": b"from-the-overlay\n"}) as guest:
        assert guest.run("cat /etc/marker") == (0, "from-the-overlay\n")
        status, out = guest.run("test -x /usr/bin/defender-iot-agent && pidof defender-iot-agent")
        assert status == 0 and out.strip().isdigit(), out
        assert guest.run("sh -c 'exit 3'")[0] == 3
        # what a user's image without the payloads gets: sent over the console
        where = push_payloads(guest, "x86_64", tmp_path / "payloads", dest="/tmp/pushed")
        assert guest.run(f"{where}/botnet 1")[0] == 0
        assert guest.run(f"cmp {where}/xmrig /opt/defender-iot-tests/xmrig")[0] == 0
