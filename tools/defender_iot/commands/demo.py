"""`defender-iot demo`: the whole story on one machine. Build the default
agent for x86_64, build the QEMU test image, start the emulated hub, boot
the image, attack it (SSH brute force, a crypto miner, a botnet, a reverse
shell, a new listening port), and show what the hub received: the posture
summary and the alerts."""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Tuple

from defender_iot.build import build_agent
from defender_iot.features import repo_root
from defender_iot.image import scenarios
from defender_iot.image.builder import build_image
from defender_iot.image.qemu import Guest
from defender_iot.image.testbed import Testbed, events, qemu_testbed

STEPS: List[Tuple[str, Callable[[Testbed], object]]] = [
    ("agent connects; heartbeat and system information arrive", scenarios.connects_and_reports),
    ("posture report, then runtime hardening (sysctl)", scenarios.posture_then_hardening),
    ("SSH brute force from the host, then a successful login", scenarios.brute_force),
    ("crypto miner talking Stratum to a pool", scenarios.crypto_miner),
    ("botnet: deleted binary in /tmp, raw socket, telnet fan-out", scenarios.botnet),
    ("reverse shell to a listener on the host", scenarios.reverse_shell),
    ("new listening port outside the allowlist", scenarios.unexpected_listening_port),
]


class Progress:
    """One line per step, with a ticking clock while it runs (plain lines
    when the output is not a terminal)."""

    def __init__(self, total: int, out=sys.stdout):
        self.total, self.out = total, out
        self.tty = out.isatty()

    def run(self, n: int, title: str, fn: Callable[[], object]) -> bool:
        label = f"[{n}/{self.total}] {title}"
        start = time.monotonic()
        done = threading.Event()

        def tick() -> None:
            while not done.wait(1):
                self.out.write(f"\r{label} ... {time.monotonic() - start:4.0f} s")
                self.out.flush()
        ticker = threading.Thread(target=tick, daemon=True)
        if self.tty:
            ticker.start()
        else:
            print(f"{label} ...", file=self.out, flush=True)
        try:
            fn()
            ok, note = True, "ok"
        except AssertionError as e:
            ok, note = False, f"FAILED: {str(e).splitlines()[0][:300]}"
        finally:
            done.set()
            if self.tty:
                ticker.join()
        prefix = f"\r{label} ... " if self.tty else "    "
        print(f"{prefix}{note} ({time.monotonic() - start:.0f} s)", file=self.out, flush=True)
        return ok


def posture_summary(bed: Testbed) -> List[str]:
    evs = events(bed.bodies(), "Baseline")
    if not evs:
        return ["  no Baseline event received"]
    checks = evs[-1]["Payload"]
    counts: dict = {}
    for c in checks:
        counts[c["Result"]] = counts.get(c["Result"], 0) + 1
    lines = ["  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f" ({len(checks)} checks)"]
    for c in [c for c in checks if c["Result"] == "Fail"][:15]:
        lines.append(f"  Fail  {c['Severity']:<8} {c['Id']:<14} {c['Description']}")
    fails = sum(1 for c in checks if c["Result"] == "Fail")
    if fails > 15:
        lines.append(f"  ... and {fails - 15} more failing checks")
    return lines


def alert_lines(bed: Testbed) -> List[str]:
    lines = []
    for e in events(bed.bodies()):
        if e.get("EventType") != "Alert":
            continue
        p = scenarios.payload(e)
        ev = ", ".join(f"{k}={v}" for k, v in list((p.get("Evidence") or {}).items())[:4])
        state = p.get("Severity", "") if p.get("State", "Active") == "Active" else p.get("State", "")
        lines.append(f"  {e.get('TimestampUTC', '')}  {e['Name']:<24} {state:<9} {ev[:110]}")
    return lines or ["  no alerts received"]


class Demo:
    name = "demo"
    help = "build the agent and a QEMU image, attack it, and show what the emulated hub received"

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--workdir", type=Path, help="where the hub data and guest logs go (default build/demo)")
        parser.add_argument("--http-port", type=int, default=0, help="the hub's web page port (default: a free one)")

    def run(self, args: argparse.Namespace) -> int:
        work = args.workdir or repo_root() / "build" / "demo"
        # A fresh hub: the alerts shown are this run's.
        shutil.rmtree(work / "hub", ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        print("== building the agent (default features) for x86_64", flush=True)
        agent = build_agent(arch="x86_64")
        print(f"   {agent.binary}")
        print("== building the QEMU test image", flush=True)
        image = build_image("x86_64", agent_binary=agent.binary, log=lambda m: print("   " + m, flush=True))
        print("== starting the emulated IoT Hub and booting the image (QEMU, TCG, restricted network)", flush=True)
        started = time.monotonic()
        def hub_ready(hub) -> None:
            print(f"   hub web page: http://127.0.0.1:{hub.http_port}/  (open it while the demo runs)", flush=True)
        with qemu_testbed(image, work, driver=Guest, hub_data=work / "hub", http_port=args.http_port,
                          on_hub=hub_ready) as bed:
            print(f"   guest console log: {bed.target.console_log}; booted in {time.monotonic() - started:.0f} s",
                  flush=True)
            progress = Progress(len(STEPS))
            results = [progress.run(i, title, lambda fn=fn: fn(bed)) for i, (title, fn) in enumerate(STEPS, 1)]
            print("\n== posture (latest Baseline report at the hub)")
            print("\n".join(posture_summary(bed)))
            print("\n== alerts as the hub received them")
            print("\n".join(alert_lines(bed)))
        failed = results.count(False)
        print(f"\n{len(results) - failed} of {len(results)} scenarios passed; hub data kept in {work / 'hub'}")
        return 1 if failed else 0


COMMAND = Demo()
