#!/usr/bin/env python3
"""What the iothub transport costs on a device: extra resident memory over
the local output, and wake-ups per minute while idle.

    .venv/bin/python bench/transport.py [--seconds 20] [--idle-seconds 60] [--json]

Two MinSizeRel builds that differ only in the transport: the heartbeat
collector with the local transport (writing to /dev/null), and the
heartbeat collector with the iothub transport connected over TLS to the
emulated hub (`defender-iot hub serve` on an ephemeral loopback port,
SAS-token module identity, spool on). Each agent runs --seconds with every
priority interval at 3 s (a message every 3 s, acknowledged by the hub),
then VmRSS and VmHWM are read from /proc/PID/status; the difference is the
transport's extra RSS (libmosquitto, OpenSSL with its TLS session, the
queue). Shared library pages count in full, as they do on a device where
nothing else maps OpenSSL; the private part (RssAnon: heap, and library
data made private by relocation) is reported on its own, and within it
the pages each shared library has made private (the `Anonymous:` lines of
/proc/PID/smaps for that library's mappings).

Idle: each agent then runs --idle-seconds with the default intervals
(30, 120, 1440 minutes: nothing is due after the first collection) and the
voluntary plus involuntary context switches of its process over that time
(from /proc/PID/status, after a 5 s settle) are its wake-ups: an agent that
polls busily would show thousands.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

from defender_iot.build import AgentBuild, build_agent  # noqa: E402
from defender_iot.features import load_features  # noqa: E402
from defender_iot.hub import HubProcess  # noqa: E402


def options(transport: str) -> Dict[str, bool]:
    return {f.option: (f.kind, f.name) in {("collector", "heartbeat"), ("transport", transport)}
            for f in load_features()}


def status(pid: int) -> Dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            out[key] = int(value.split()[0])
    return out


def library_private_kb(pid: int) -> Dict[str, int]:
    """Per shared library, the KB of its mappings that are private copies
    (written by relocation or at run time)."""
    out: Dict[str, int] = {}
    lib = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            lib = Path(fields[5]).name if len(fields) > 5 and ".so" in fields[5] else ""
        elif lib and fields[0] == "Anonymous:":
            out[lib] = out.get(lib, 0) + int(fields[1])
    return out


def run(build: AgentBuild, cfg: dict, work: Path, seconds: float, settle: float = 0) -> Dict[str, int]:
    path = work / "agent.json"
    path.write_text(json.dumps(cfg))
    os.chmod(path, 0o600)
    with open(work / "agent.log", "a") as log:
        proc = subprocess.Popen([str(build.binary), "--config", str(path)], stdout=subprocess.DEVNULL, stderr=log)
    try:
        time.sleep(settle)
        before = status(proc.pid)
        time.sleep(seconds)
        after = status(proc.pid)
        libs = library_private_kb(proc.pid)
        if proc.poll() is not None:
            raise SystemExit(f"the agent exited early; see {work / 'agent.log'}")
    finally:
        proc.terminate()
        proc.wait(30)
    switches = lambda s: s["voluntary_ctxt_switches"] + s["nonvoluntary_ctxt_switches"]  # noqa: E731
    return {"rss_kb": after["VmRSS"], "hwm_kb": after["VmHWM"], "anon_kb": after["RssAnon"],
            "file_kb": after["RssFile"], "wakeups": switches(after) - switches(before), "library_private_kb": libs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--idle-seconds", type=float, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    local = build_agent(options("local"))
    iothub = build_agent(options("iothub"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with HubProcess(work / "hub") as hub:
            cs = work / "connection_string.txt"
            cs.write_text(hub.connection_string("bench", "DefenderIotMicroAgent") + "\n")
            os.chmod(cs, 0o600)
            common = {"Agent_StateDirectory": str(work / "state")}
            cfg_local = {**common, "Agent_Transport": "local", "Local_Path": "/dev/null"}
            cfg_hub = {**common, "Agent_Transport": "iothub", "IothubModule_ConnectionStringFile": str(cs),
                       "IothubModule_CaFile": str(hub.ca),
                       "IothubModule_ConnectAddress": f"127.0.0.1:{hub.mqtt_port}"}
            busy = {"CollectorsCore_PriorityIntervals": "0.05,0.05,0.05"}
            res = {
                "local": run(local, {**cfg_local, **busy}, work, args.seconds),
                "iothub": run(iothub, {**cfg_hub, **busy}, work, args.seconds),
                "local_idle": run(local, cfg_local, work, args.idle_seconds, settle=5),
                "iothub_idle": run(iothub, cfg_hub, work, args.idle_seconds, settle=5),
            }
            delivered = len(hub.client.messages(device="bench"))
    per_min = 60 / args.idle_seconds
    summary = {
        "extra_rss_kb": res["iothub"]["rss_kb"] - res["local"]["rss_kb"],
        "extra_private_kb": res["iothub"]["anon_kb"] - res["local"]["anon_kb"],
        "extra_shared_file_kb": res["iothub"]["file_kb"] - res["local"]["file_kb"],
        "extra_peak_rss_kb": res["iothub"]["hwm_kb"] - res["local"]["hwm_kb"],
        "rss_kb": {"local": res["local"]["rss_kb"], "iothub": res["iothub"]["rss_kb"]},
        "idle_wakeups_per_minute": {"local": round(res["local_idle"]["wakeups"] * per_min, 1),
                                    "iothub": round(res["iothub_idle"]["wakeups"] * per_min, 1)},
        "messages_delivered": delivered,
        "library_private_kb": {k: v for k, v in sorted(res["iothub"]["library_private_kb"].items(),
                                                       key=lambda kv: -kv[1]) if v},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"RSS after {args.seconds:g} s, a message every 3 s: local {res['local']['rss_kb']} KB, "
              f"iothub {res['iothub']['rss_kb']} KB -> extra {summary['extra_rss_kb']} KB "
              f"(peak: extra {summary['extra_peak_rss_kb']} KB; target <= 300 KB)")
        print(f"  of which private (heap, relocated library data): {summary['extra_private_kb']} KB; "
              f"clean shared library pages (libcrypto, libssl, libmosquitto): {summary['extra_shared_file_kb']} KB")
        print("  private pages per shared library (iothub): "
              + ", ".join(f"{k} {v} KB" for k, v in summary["library_private_kb"].items()))
        print(f"idle wake-ups per minute over {args.idle_seconds:g} s: local "
              f"{summary['idle_wakeups_per_minute']['local']}, iothub {summary['idle_wakeups_per_minute']['iothub']}")
        print(f"messages the hub received: {delivered}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
