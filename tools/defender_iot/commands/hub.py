"""`defender-iot hub`: the emulated Azure IoT Hub (see docs/hub.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional

from defender_iot.errors import UserError
from defender_iot.hub.auth import Identity, connection_string
from defender_iot.hub.certs import Pki
from defender_iot.hub.client import HubApiError, HubClient, running_hub
from defender_iot.hub.server import DEFAULT_HTTP_PORT, DEFAULT_MQTT_PORT, ServeOptions, serve
from defender_iot.hub.store import MessageFilter, Store, parse_json_object


def _data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, metavar="DIR",
                   help="hub data directory (ca.pem, hub.db, hub.json)")


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", metavar="DEVICE_ID")
    p.add_argument("--module", default="", metavar="MODULE_ID")
    _data(p)


def _client(data_dir: Path) -> Optional[HubClient]:
    return HubClient.for_data_dir(data_dir) if running_hub(data_dir) else None


def _api(call, *args: Any) -> Any:
    try:
        return call(*args)
    except HubApiError as e:
        raise UserError(f"hub refused: {e}") from None
    except OSError as e:
        raise UserError(f"cannot reach the hub's HTTP API: {e}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    serve(ServeOptions(args.data, args.mqtt_port, args.http_port, args.bind, args.hostname))
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    ident = Identity(args.device, args.module)
    store = Store.open(args.data)
    pki = Pki(args.data)
    pki.ensure()
    issued = None
    try:
        existing = store.get_identity(ident)
        if args.x509 or args.x509_ca:
            stem = ident.client_id.replace("/", "+")
            cert, key, thumb = pki.issue_client(ident.client_id if args.x509_ca and ident.module_id
                                                else ident.device_id, stem)
            store.add_identity(ident, "certificateAuthority" if args.x509_ca else "selfSigned",
                               primary_thumbprint=None if args.x509_ca else thumb)
            print(f"certificate {cert}\nkey {key}\nthumbprint {thumb}", file=sys.stderr)
            issued = (cert, key)
        elif args.cert:
            try:
                pem = args.cert.read_bytes()
            except OSError as e:
                raise UserError(f"{args.cert}: {e.strerror}") from None
            store.add_identity(ident, "selfSigned", primary_thumbprint=pki.trust_client_cert(pem))
        elif args.thumbprint:
            store.add_identity(ident, "selfSigned", primary_thumbprint=args.thumbprint)
        elif existing is None:
            store.add_identity(ident, "sas")
        row = store.get_identity(ident)
        assert row is not None
    finally:
        store.close()
    text = connection_string(args.hostname, ident, row["primary_key"])
    if args.out:
        _write_credentials(args.out, text, issued)
    print(text)
    return 0


def _write_credentials(out: Path, text: str, issued) -> None:
    """The retired agent's layout: connection_string.txt, and for X.509
    certificate_public.pem and certificate_private.pem, readable by the
    owner only (the agent refuses group- or world-readable credentials)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"connection_string.txt": text.encode() + b"\n"}
    if issued:
        files["certificate_public.pem"] = issued[0].read_bytes()
        files["certificate_private.pem"] = issued[1].read_bytes()
    for name, data in files.items():
        path = out / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)


def _print_message(msg: Dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(msg), flush=True)
        return
    who = msg["device"] + (f"/{msg['module']}" if msg["module"] else "")
    body = msg.get("body")
    if isinstance(body, dict) and isinstance(body.get("Events"), list):
        what = ", ".join(f"{e.get('EventType', '?')}:{e.get('Name', '?')}" for e in body["Events"] if isinstance(e, dict))
    else:
        what = json.dumps(body if "body" in msg else msg.get("body_base64"))[:120]
    print(f"{msg['received']} #{msg['id']} {who} {msg['size']} B [{what}]", flush=True)


def cmd_messages(args: argparse.Namespace) -> int:
    if not (args.data / "hub.db").exists():
        raise UserError(f"{args.data}: no hub.db (not a hub data directory; run `defender-iot hub serve --data {args.data}`)")
    store = Store.open(args.data)
    flt = MessageFilter(device=args.device, module=args.module, type=args.type, alert=args.alert,
                        limit=args.limit or 1_000_000)
    try:
        if args.last:
            msgs = list(reversed(store.messages(replace(flt, limit=args.last, newest_first=True))))
        else:
            msgs = store.messages(flt)
        for m in msgs:
            _print_message(m, args.json)
        last = max([m["id"] for m in msgs], default=0) if msgs else _last_id(store)
        while args.follow:
            time.sleep(0.5)
            for m in store.messages(replace(flt, since_id=last)):
                _print_message(m, args.json)
                last = m["id"]
    except BrokenPipeError:
        # The reader (head, grep -m) has what it wanted.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        store.close()
    return 0


def _last_id(store: Store) -> int:
    rows = store.messages(MessageFilter(limit=1, newest_first=True))
    return rows[0]["id"] if rows else 0


def cmd_twin(args: argparse.Namespace) -> int:
    ident = Identity(args.device, args.module)
    desired = parse_json_object(args.set_desired, "--set-desired") if args.set_desired else None
    client = _client(args.data)
    if client is not None:
        twin = (_api(client.set_desired, ident.device_id, ident.module_id or None, desired) if desired is not None
                else _api(client.get_twin, ident.device_id, ident.module_id or None))
    else:
        store = Store.open(args.data)
        try:
            if store.get_identity(ident) is None:
                raise UserError(f"{ident} is not registered in {args.data} (add it with `defender-iot hub add`)")
            if desired is not None:
                store.patch_desired(ident, desired)
            twin = store.service_twin(ident)
        finally:
            store.close()
    print(json.dumps(twin, indent=2))
    return 0


def cmd_invoke(args: argparse.Namespace) -> int:
    client = HubClient.for_data_dir(args.data)
    payload = json.loads(args.payload) if args.payload else None
    result = _api(client.invoke, args.device, args.module or None, args.method, payload, args.timeout,
                  args.connect_timeout)
    print(json.dumps(result, indent=2))
    return 0 if 200 <= int(result.get("status", 500)) < 300 else 1


def cmd_c2d(args: argparse.Namespace) -> int:
    ident = Identity(args.device, args.module)
    props: Dict[str, Optional[str]] = {}
    for item in args.property:
        k, sep, v = item.partition("=")
        props[k] = v if sep else None
    client = _client(args.data)
    if client is not None:
        msg_id = _api(client.send_c2d, ident.device_id, ident.module_id or None, args.body, props)
    else:
        store = Store.open(args.data)
        try:
            if store.get_identity(ident) is None:
                raise UserError(f"{ident} is not registered in {args.data}")
            msg_id = store.enqueue_c2d(ident, args.body.encode(), props)
        finally:
            store.close()
    print(msg_id)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = Store.open(args.data)
    try:
        for row in store.list_identities():
            ident = Identity(row["device_id"], row["module_id"])
            print(f"{ident}\t{row['auth_type']}\t{row['status']}\t"
                  f"{connection_string(args.hostname, ident, row['primary_key'])}")
    finally:
        store.close()
    return 0


class Hub:
    name = "hub"
    help = "the emulated Azure IoT Hub: serve, register devices, read what they sent"

    def setup_parser(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="hub_command", metavar="ACTION")
        sub.required = True

        p = sub.add_parser("serve", help="run the hub (MQTT over TLS + HTTP service API)")
        _data(p)
        p.add_argument("--mqtt-port", type=int, default=DEFAULT_MQTT_PORT,
                       help=f"MQTT/TLS port (default {DEFAULT_MQTT_PORT}; 0 picks a free one, see DIR/hub.json)")
        p.add_argument("--http-port", type=int, default=DEFAULT_HTTP_PORT,
                       help=f"HTTP API and web page port (default {DEFAULT_HTTP_PORT}; 0 picks a free one)")
        p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        p.add_argument("--hostname", default="localhost", help="the hub's name in connection strings (default localhost)")
        p.add_argument("-v", "--verbose", action="store_true")
        p.set_defaults(hub_run=cmd_serve)

        p = sub.add_parser("add", help="register a device or module and print its connection string")
        _target(p)
        auth = p.add_mutually_exclusive_group()
        auth.add_argument("--x509", action="store_true",
                          help="X.509 by thumbprint: issue a client certificate from the hub CA into DIR/identities/")
        auth.add_argument("--x509-ca", action="store_true",
                          help="X.509 CA-signed: any certificate the hub CA issued with CN = the device id")
        auth.add_argument("--cert", type=Path, metavar="PEM",
                          help="X.509 by thumbprint of this (e.g. self-signed) certificate")
        auth.add_argument("--thumbprint", metavar="HEX", help="X.509 by this SHA-1 or SHA-256 thumbprint")
        p.add_argument("--hostname", default="localhost", help="HostName in the connection string")
        p.add_argument("--out", type=Path, metavar="DIR",
                       help="also write DIR/connection_string.txt (and, with --x509/--x509-ca, "
                            "certificate_public.pem, certificate_private.pem), mode 0600")
        p.set_defaults(hub_run=cmd_add)

        p = sub.add_parser("messages", help="print what devices sent (JSON lines with --json)")
        _data(p)
        p.add_argument("--device")
        p.add_argument("--module", help="module id ('' for device identities)")
        p.add_argument("--type", help="only messages with an event of this Name or EventType (Heartbeat, Alert, ...)")
        p.add_argument("--alert", metavar="NAME", help="only messages carrying this alert")
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.add_argument("--last", type=int, metavar="N", help="only the N newest")
        p.add_argument("--limit", type=int, help=argparse.SUPPRESS)
        p.add_argument("-f", "--follow", action="store_true", help="keep printing new messages")
        p.set_defaults(hub_run=cmd_messages)

        p = sub.add_parser("twin", help="show a twin; --set-desired patches its desired properties")
        _target(p)
        p.add_argument("--set-desired", metavar="JSON", help='e.g. \'{"Process_Disabled": true}\' (null deletes a key)')
        p.set_defaults(hub_run=cmd_twin)

        p = sub.add_parser("invoke", help="call a direct method on a connected device or module")
        _target(p)
        p.add_argument("method")
        p.add_argument("--payload", help="JSON payload")
        p.add_argument("--timeout", type=float, default=30, help="response timeout, seconds")
        p.add_argument("--connect-timeout", type=float, default=0, help="wait this long for the device to connect")
        p.set_defaults(hub_run=cmd_invoke)

        p = sub.add_parser("c2d", help="send a cloud-to-device message (queued until the device subscribes)")
        _target(p)
        p.add_argument("body")
        p.add_argument("--property", "-p", action="append", default=[], metavar="K=V")
        p.set_defaults(hub_run=cmd_c2d)

        p = sub.add_parser("list", help="list identities and their connection strings")
        _data(p)
        p.add_argument("--hostname", default="localhost")
        p.set_defaults(hub_run=cmd_list)

    def run(self, args: argparse.Namespace) -> int:
        return int(args.hub_run(args) or 0)


COMMAND = Hub()
