"""Driving a device with labgrid: its QEMUDriver for the test image, or any
labgrid environment file (a real board on a serial port, the user's own
Yocto/Buildroot QEMU image). The scenarios then see labgrid's
CommandProtocol through the same `run(cmd) -> (status, output)` as the
pexpect console (qemu.Guest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from defender_iot.errors import UserError
from defender_iot.image.builder import Image
from defender_iot.image.qemu import BootFailed, GuestBase, GuestHung, free_port, netdev, overlay_initrd


def qemu_env(image: Image, initrd: Optional[Path], *, guestfwd, ssh_port: int, memory: int = 256) -> dict:
    """A labgrid environment for the image under QEMU. labgrid's QEMUDriver
    has no initrd key: -initrd goes in extra_args (-append is refused there,
    the kernel command line is boot_args). An image with a `disk` boots
    from it (the driver adds root=/dev/vda)."""
    arch = image.arch_info
    machine = dict(zip(arch.machine[::2], arch.machine[1::2]))
    # -nic takes the -netdev options plus model=; netdev() keeps restrict=on.
    nic = netdev(guestfwd, ssh_port).replace("user,id=n0,", "user,model=virtio-net-pci,", 1)
    qemu = {
        "qemu_bin": "qemu", "machine": machine.get("-M", "pc"), "cpu": machine.get("-cpu", "qemu64"),
        "memory": f"{memory}M", "kernel": "kernel", "display": "none",
        "boot_args": f"console={arch.console} quiet panic=-1",
        "extra_args": "-accel tcg -smp 1 -no-reboot" + (f" -initrd {initrd}" if initrd else ""),
        "nic": nic,
    }
    images = {"kernel": str(image.kernel)}
    if image.disk is not None:
        qemu["disk"] = "disk"
        images["disk"] = str(image.disk)
    shell = {"prompt": image.prompt, "login_prompt": image.login_prompt, "username": image.username,
             "password": image.root_password, "login_timeout": 240}
    if image.ready_banner:
        shell["console_ready"] = image.ready_banner
    return {
        "targets": {f"dfi-{image.arch}": {"drivers": {"QEMUDriver": qemu, "ShellDriver": shell}}},
        "tools": {"qemu": f"/usr/bin/{arch.qemu}"},
        "images": images,
    }


def _console_log_dir(directory: Path) -> Path:
    """labgrid writes what its consoles read through one process-wide
    reporter (console_<target> files); start it if nobody has."""
    from labgrid.consoleloggingreporter import ConsoleLoggingReporter
    if ConsoleLoggingReporter.instance is None:
        ConsoleLoggingReporter.start(str(directory))
    return Path(ConsoleLoggingReporter.instance.logpath)


@dataclass
class LabgridGuest(GuestBase):
    """The test image (or, with `env_file` and image None, any labgrid
    target named `target_name`) driven by labgrid. Same interface as
    qemu.Guest."""
    env_file: Optional[Path] = None
    target_name: str = "main"
    log_dir: Optional[Path] = None
    target: object = None
    shell: object = None
    power: object = None

    @property
    def console_log(self) -> Path:
        return (self.log_dir or self.workdir) / f"console_{self.target_name}"

    def start(self) -> "LabgridGuest":
        from labgrid import Environment
        from ruamel.yaml import YAML
        self.workdir.mkdir(parents=True, exist_ok=True)
        env_file = self.env_file
        if env_file is None:
            if self.image is None:
                raise UserError("LabgridGuest needs an image or a labgrid environment file")
            self.ssh_port = self.ssh_port or free_port()
            initrd = None
            if self.image.initrd is not None:
                initrd = overlay_initrd(self.image, self.workdir / "initrd-run.gz", self.config, self.files)
            env_file = self.workdir / "labgrid-env.yaml"
            self.target_name = f"dfi-{self.image.arch}"
            with open(env_file, "w") as f:
                YAML().dump(qemu_env(self.image, initrd, guestfwd=self.guestfwd, ssh_port=self.ssh_port), f)
        self.log_dir = _console_log_dir(self.workdir)
        from labgrid.exceptions import NoDriverFoundError
        from labgrid.protocol import CommandProtocol, PowerProtocol
        try:
            self.target = Environment(str(env_file)).get_target(self.target_name)
            if self.target is None:
                raise UserError(f"{env_file}: no target named '{self.target_name}'")
            try:
                self.power = self.target.get_driver(PowerProtocol)
            except NoDriverFoundError:
                self.power = None      # a board without power control: already on
            if self.power is not None:
                self.target.activate(self.power)
                self.power.on()
            self.shell = self.target.get_driver(CommandProtocol)
            self.target.activate(self.shell)
        except UserError:
            raise
        except Exception as e:
            self.stop()
            raise BootFailed(f"labgrid target did not reach a shell ({type(e).__name__}: {e}); console log "
                             f"{self.console_log}:\n{self.console_text()[-6000:]}") from None
        return self

    def run(self, cmd: str, timeout: float = 60) -> Tuple[int, str]:
        if self.shell is None:
            raise UserError("the labgrid target is not active")
        try:
            out, err, status = self.shell.run(cmd, timeout=int(timeout))
        except Exception as e:
            raise GuestHung(f"`{cmd}` failed on the labgrid target ({type(e).__name__}: {e}); last console output:\n"
                            f"{self.console_text()[-4000:]}") from None
        return status, "\n".join(out + err) + ("\n" if out or err else "")

    def alive(self) -> bool:
        return self.shell is not None

    def stop(self) -> None:
        if self.target is not None:
            try:
                if self.power is not None:
                    self.power.off()
                self.target.deactivate_all_drivers()
            except Exception:
                pass
        self.target = self.shell = self.power = None
