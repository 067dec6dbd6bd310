"""A guest that does not boot, or stops answering, fails with its console
in the message, never with a silent timeout."""

from __future__ import annotations

import dataclasses

import pytest

from defender_iot.image.builder import build_image
from defender_iot.image.cpio import Archive
from defender_iot.image.qemu import BootFailed, Guest, GuestHung

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def image(agent_factory):
    return build_image("x86_64", agent_binary=agent_factory(None).binary, log=lambda m: None)


def test_a_guest_that_does_not_boot_fails_with_its_console(image, tmp_path):
    a = Archive()
    a.file("init", "#!/nonexistent/interpreter\n", 0o755)   # the kernel cannot run it and panics
    a.write_gz(tmp_path / "broken.gz")
    broken = dataclasses.replace(image, initrd=tmp_path / "broken.gz")
    with pytest.raises(BootFailed) as e:
        Guest(broken, tmp_path / "run", boot_timeout=120).start()
    assert "did not reach a shell" in str(e.value)
    assert "Kernel panic" in str(e.value) or "No working init" in str(e.value), str(e.value)[-2000:]


def test_a_hung_command_fails_with_the_console(image, tmp_path):
    with Guest(image, tmp_path) as guest:
        guest.run("echo before-the-hang")
        with pytest.raises(GuestHung) as e:
            guest.run("sleep 30", timeout=3)
        assert "sleep 30" in str(e.value) and "before-the-hang" in str(e.value)
