#!/usr/bin/env python3
"""Load on the emulated IoT Hub: how many device clients it holds and how
many 1 KB device-to-cloud messages per second it takes, over MQTT/TLS on
loopback, with the hub pinned to one CPU core.

    .venv/bin/python bench/hub_load.py [--clients 1000] [--seconds 10] [--size 1024] [--window 8]

The hub runs as `defender-iot hub serve` (via HubProcess) on free ports,
pinned to CPU 0; this load generator runs in one asyncio process pinned to
CPU 1. Every client authenticates with its own SAS identity and publishes
QoS 1 messages (like the agent) with up to --window unacknowledged at a time.
A message counts once the hub has PUBACKed it, which it does only after the
SQLite commit; at the end the hub's stored count is checked against it.
Reported: connect time, clients connected, acknowledged messages/s, the hub's
CPU use (from /proc) and RSS, and the hub's CPU time per message, which gives
the rate one fully available core sustains. If the hub's CPU use is well
below 100%, the generator or other load on the machine, not the hub, was the
limit, and the measured rate is a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from defender_iot.hub import HubProcess  # noqa: E402
from defender_iot.hub.auth import Identity, sas_token  # noqa: E402
from defender_iot.hub.store import Store  # noqa: E402

# MQTT packets are built by hand here, on purpose: the generator must cost far
# less CPU than the server under test, and these three fixed-format packets
# (CONNECT, PUBLISH QoS 1, reading CONNACK/PUBACK) are checked by the hub's
# own decoder (amqtt's codec), which refuses anything malformed.


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, username: str, password: str, keepalive: int = 600) -> bytes:
    var = _str("MQTT") + bytes([4, 0xC0]) + struct.pack("!H", keepalive)  # username+password, clean session 0
    body = var + _str(client_id) + _str(username) + _str(password)
    return b"\x10" + _varint(len(body)) + body


def publish_head(topic: str, payload_len: int) -> bytes:
    """A QoS 1 PUBLISH up to the topic; the 2-byte packet id and the payload follow."""
    t = _str(topic)
    return b"\x32" + _varint(len(t) + 2 + payload_len) + t


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Load:
    def __init__(self, args: argparse.Namespace, hub: HubProcess, keys: Dict[str, str]) -> None:
        self.args, self.hub, self.keys = args, hub, keys
        self.ctx = ssl.create_default_context(cafile=str(hub.ca))
        self.connected = 0
        self.refused = 0
        self.acked = 0
        self.sent = 0
        self.start = asyncio.Event()
        self.stop = False
        # An agent-like message (valid JSON, so the hub indexes its events) of
        # exactly --size bytes.
        head, tail = b'{"Events":[{"EventType":"Security","Name":"Heartbeat","Payload":[{"Pad":"', b'"}]}]}'
        self.payload = head + b"x" * max(0, args.size - len(head) - len(tail)) + tail
        json.loads(self.payload)

    async def client(self, device: str, gate: asyncio.Semaphore) -> None:
        ident = Identity(device)
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.hub.mqtt_port, ssl=self.ctx,
                                                           server_hostname="localhost")
            writer.write(connect_packet(device, f"localhost/{device}/?api-version=2021-04-12",
                                        sas_token("localhost", ident, self.keys[device])))
            connack = await reader.readexactly(4)
        if connack[3] != 0:
            self.refused += 1
            writer.close()
            return
        self.connected += 1
        await self.start.wait()
        head = publish_head(f"devices/{device}/messages/events/%24.ct=application%2Fjson", len(self.payload))
        window = asyncio.Semaphore(self.args.window)

        async def read_acks() -> None:
            while True:
                pkt = await reader.readexactly(4)
                if pkt[0] != 0x40:
                    raise RuntimeError(f"{device}: unexpected packet {pkt!r}")
                self.acked += 1
                window.release()

        acks = asyncio.create_task(read_acks())
        pid = 0
        try:
            while not self.stop:
                await window.acquire()
                pid = pid % 65535 + 1
                writer.write(head + struct.pack("!H", pid) + self.payload)
                self.sent += 1
                if writer.transport.get_write_buffer_size() > 65536:
                    await writer.drain()
            # let the in-flight messages be acknowledged
            for _ in range(self.args.window):
                await asyncio.wait_for(window.acquire(), 30)
        finally:
            acks.cancel()
            writer.close()


async def run(args: argparse.Namespace, hub: HubProcess, keys: Dict[str, str]) -> dict:
    load = Load(args, hub, keys)
    gate = asyncio.Semaphore(100)  # handshakes in flight at once
    t0 = time.monotonic()
    tasks = [asyncio.create_task(load.client(d, gate)) for d in keys]
    while load.connected + load.refused < len(keys):
        done = [t for t in tasks if t.done() and t.exception()]
        if done:
            raise done[0].exception()  # type: ignore[misc]
        await asyncio.sleep(0.05)
    connect_s = time.monotonic() - t0
    health = hub.client.health()
    stored_before = health["messages"]
    pid = hub.proc.pid  # type: ignore[union-attr]
    cpu0, gen0, w0, acked0 = cpu_seconds(pid), cpu_seconds(os.getpid()), time.monotonic(), load.acked
    load.start.set()
    await asyncio.sleep(args.seconds)
    cpu1, gen1, w1, acked1 = cpu_seconds(pid), cpu_seconds(os.getpid()), time.monotonic(), load.acked
    rss = rss_kib(pid)
    load.stop = True
    await asyncio.gather(*tasks)
    stored = hub.client.health()["messages"] - stored_before
    return {
        "clients": len(keys), "connected": load.connected, "refused": load.refused,
        "connected_by_hub": len(health["connected"]), "connect_seconds": round(connect_s, 2),
        "message_bytes": len(load.payload), "window": args.window, "seconds": round(w1 - w0, 2),
        "acked_per_second": round((acked1 - acked0) / (w1 - w0)),
        "hub_cpu_percent": round(100 * (cpu1 - cpu0) / (w1 - w0)),
        "generator_cpu_percent": round(100 * (gen1 - gen0) / (w1 - w0)),
        # CPU time per message does not depend on how much CPU the machine
        # left the hub: it gives the rate one fully available core sustains.
        "hub_cpu_us_per_message": round(1e6 * (cpu1 - cpu0) / max(1, acked1 - acked0), 1),
        "one_core_messages_per_second": round((acked1 - acked0) / max(1e-9, cpu1 - cpu0)),
        "hub_rss_mib": round(rss / 1024, 1),
        "sent": load.sent, "acked": load.acked, "stored": stored,
        # Other work on the machine: a load average above the CPU count
        # means the hub and the generator got only a share of their cores.
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--size", type=int, default=1024, help="message body bytes")
    ap.add_argument("--window", type=int, default=8, help="unacknowledged QoS 1 messages per client")
    ap.add_argument("--json", action="store_true", help="print only the JSON result")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="hub-load-") as tmp:
        data = Path(tmp) / "hub"
        store = Store.open(data)
        keys = {f"load{i:05d}": store.add_identity(Identity(f"load{i:05d}"))["primary_key"] for i in range(args.clients)}
        store.close()
        with HubProcess(data) as hub:
            assert hub.proc is not None
            os.sched_setaffinity(hub.proc.pid, {cpus[0]})
            if len(cpus) > 1:
                os.sched_setaffinity(0, set(cpus[1:]))
            result = asyncio.run(run(args, hub, keys))
    result["command"] = "bench/hub_load.py " + " ".join(sys.argv[1:])
    result["cpus"] = len(cpus)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['connected']}/{result['clients']} clients connected in {result['connect_seconds']} s "
              f"({result['connected_by_hub']} seen by the hub)")
        print(f"{result['acked_per_second']} messages/s of {result['message_bytes']} B acknowledged over "
              f"{result['seconds']} s, hub CPU {result['hub_cpu_percent']}% of one core, RSS {result['hub_rss_mib']} MiB "
              f"(load generator CPU {result['generator_cpu_percent']}%, machine load average "
              f"{result['load_average_1min']} on {result['cpus']} CPUs)")
        print(f"hub CPU per message {result['hub_cpu_us_per_message']} us: "
              f"{result['one_core_messages_per_second']} messages/s per fully used core")
        print(f"sent {result['sent']}, acknowledged {result['acked']}, stored by the hub {result['stored']}")
        print(json.dumps(result))
    ok = result["connected"] == args.clients and result["stored"] >= result["acked"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
