"""`defender-iot hub serve`: the MQTT listener and the HTTP service API in
one asyncio process, announced to other commands through DIR/hub.json."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import json
import logging
import os
import signal
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from aiohttp import web

from defender_iot.errors import UserError
from defender_iot.hub.certs import SERVER_NAMES, Pki
from defender_iot.hub.http import make_app
from defender_iot.hub.mqtt import HANDSHAKE_TIMEOUT, HubCore
from defender_iot.hub.store import Store, utcnow

DEFAULT_MQTT_PORT = 8883  # the only port the Python device SDK can use
DEFAULT_HTTP_PORT = 8080
log = logging.getLogger("defender_iot.hub")


@dataclass
class ServeOptions:
    data_dir: Path
    mqtt_port: int = DEFAULT_MQTT_PORT
    http_port: int = DEFAULT_HTTP_PORT
    bind: str = "127.0.0.1"
    hostname: str = "localhost"


def state_file(data_dir: Path) -> Path:
    return Path(data_dir) / "hub.json"


def read_state(data_dir: Path) -> Optional[dict]:
    """DIR/hub.json if the hub process it names is alive (a pid reused by
    another program after a crash does not count)."""
    try:
        info = json.loads(state_file(data_dir).read_text())
        cmdline = Path(f"/proc/{int(info['pid'])}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if b"hub\0serve" in cmdline else None


async def _serve(opts: ServeOptions) -> None:
    other = read_state(opts.data_dir)
    if other is not None and other["pid"] != os.getpid():
        raise UserError(f"{opts.data_dir}: a hub (pid {other['pid']}) already serves this data directory (see hub.json)")
    if opts.bind not in ("127.0.0.1", "::1", "localhost"):
        log.warning("binding to %s: the HTTP API has no authentication and hands out device keys", opts.bind)
    pki = Pki(opts.data_dir)
    store = Store.open(opts.data_dir)
    core = HubCore(store, pki, {n.lower() for n in (opts.hostname, *SERVER_NAMES)})
    try:
        pki.ensure((opts.hostname,))
        tls = core.ssl_context()
    except (ValueError, ssl.SSLError) as e:
        raise UserError(f"{opts.data_dir}: bad certificate or key in ca.pem/ca.key/server.pem/server.key/"
                        f"trusted-clients.pem ({e}); delete them to have new ones made") from None
    try:
        mqtt = await asyncio.start_server(core.handle_client, opts.bind, opts.mqtt_port, ssl=tls,
                                          ssl_handshake_timeout=HANDSHAKE_TIMEOUT, reuse_address=True,
                                          backlog=4096)
    except OSError as e:
        raise UserError(f"cannot listen on {opts.bind}:{opts.mqtt_port} for MQTT: {e.strerror} "
                        "(is another hub running? see DIR/hub.json)") from None
    runner = web.AppRunner(make_app(core, opts.hostname), access_log=None)
    await runner.setup()
    try:
        http_sock = socket.create_server((opts.bind, opts.http_port), reuse_port=False)
    except OSError as e:
        mqtt.close()
        raise UserError(f"cannot listen on {opts.bind}:{opts.http_port} for HTTP: {e.strerror}") from None
    await web.SockSite(runner, http_sock).start()
    mqtt_port = mqtt.sockets[0].getsockname()[1]
    http_port = http_sock.getsockname()[1]
    info = {"pid": os.getpid(), "bind": opts.bind, "hostname": opts.hostname, "mqtt_port": mqtt_port,
            "http_port": http_port, "ca": str(pki.ca_cert), "started": utcnow()}
    tmp = state_file(opts.data_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, state_file(opts.data_dir))
    log.info("hub ready: MQTT/TLS %s:%d, HTTP http://%s:%d/, data %s", opts.bind, mqtt_port, opts.bind,
             http_port, opts.data_dir)

    watcher = asyncio.create_task(core.housekeeping())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("hub stopping")
        watcher.cancel()
        mqtt.close()
        await core.shutdown()
        await runner.cleanup()
        store.close()
        try:
            if json.loads(state_file(opts.data_dir).read_text()).get("pid") == os.getpid():
                state_file(opts.data_dir).unlink()
        except (OSError, ValueError):
            pass


def serve(opts: ServeOptions) -> None:
    # asyncio gives every TLS connection a 256 KiB read buffer
    # (SSLProtocol.max_size): 250 MiB for 1,000 devices. A TLS record carries
    # at most 16 KiB, so reads of 16 KiB lose nothing. This process is the
    # hub alone, so the class attribute is ours to tune.
    asyncio.sslproto.SSLProtocol.max_size = 16 * 1024
    asyncio.run(_serve(opts))
