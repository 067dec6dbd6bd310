"""The device-facing side of the hub: MQTT 3.1.1 over TLS as IoT Hub speaks it.

Packets are encoded and decoded by amqtt's codec (`amqtt.mqtt.*Packet`); the
session layer is ours. amqtt's `Broker` (0.12) was tried and is not used,
because IoT Hub is not a general broker and the Broker cannot be made to act
like it without patching its private methods:
- it refuses every publish on a `$` topic and stops handling that client's
  messages (`_handle_message_delivery`), and every twin request and method
  reply from a device goes to `$iothub/...`;
- it sends PUBACK before the message is handled, so a hub crash could lose
  an acknowledged event; we PUBACK only after the SQLite commit;
- it never drops a client whose keep-alive expired (`handle_read_timeout` is
  a no-op), has no CONNECT timeout and reads a packet of any announced size
  (up to 256 MB) before looking at it; half-open and hostile clients would
  pile up;
- it accepts QoS 2, where IoT Hub disconnects the client;
- it routes every publish through all subscriptions (O(subscriptions) per
  message), while IoT Hub routes device messages to the service only.
Client certificates are checked by the hub itself after the handshake
(thumbprint, or issued by the hub CA with the right CN): the TLS layer only
proves the client holds the key.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Dict, Optional, Set, Tuple

from amqtt.adapters import BufferReader
from amqtt.mqtt import packet_class
from amqtt.mqtt.connack import ConnackPacket
from amqtt.mqtt.connect import ConnectPacket
from amqtt.mqtt.packet import (CONNECT, DISCONNECT, PINGREQ, PUBACK, PUBLISH, SUBSCRIBE, UNSUBSCRIBE,
                               MQTTFixedHeader)
from amqtt.mqtt.pingresp import PingRespPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.suback import SubackPacket
from amqtt.mqtt.unsuback import UnsubackPacket

from defender_iot.hub.auth import AuthError, Identity, parse_username, verify_sas
from defender_iot.hub.certs import Pki, thumbprint
from defender_iot.hub.store import Store

log = logging.getLogger("defender_iot.hub")

MAX_MESSAGE = 256 * 1024            # D2C body limit [QT]
MAX_PACKET = MAX_MESSAGE + 65536 + 8  # body + longest topic (property bag) + header fields
MAX_CONNECT = 64 * 1024
CONNECT_TIMEOUT = 10.0
HANDSHAKE_TIMEOUT = 10.0
KEEPALIVE_CAP = 1767                # server side: 1.5 x client value, capped [MQ]
SLOW_READER_BYTES = 1 << 20

# CONNACK return codes (MQTT 3.1.1 section 3.2.2.3)
REFUSED_PROTOCOL, REFUSED_AUTH = 1, 5


class Disconnect(Exception):
    """Close the client's connection; the message says why (logged)."""


@dataclass(eq=False)  # compared and hashed by identity
class Connection:
    ident: Identity
    writer: asyncio.StreamWriter
    subscriptions: Dict[str, int] = field(default_factory=dict)  # kind -> granted QoS
    inflight_c2d: Dict[int, int] = field(default_factory=dict)   # packet id -> c2d row id
    packet_ids: "itertools.cycle[int]" = field(default_factory=lambda: itertools.cycle(range(1, 65536)))
    closed: bool = False
    auth: str = "sas"
    keepalive: int = 0
    expires: Optional[float] = None  # SAS expiry: IoT Hub closes the connection then

    def send(self, packet) -> None:
        if not self.closed:
            self.writer.write(packet.to_bytes())

    def publish(self, topic: str, body: bytes, qos: int = 0) -> Optional[int]:
        pid = next(self.packet_ids) if qos else None
        self.send(PublishPacket.build(topic, body, pid, False, qos, False))
        return pid

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


def subscription_kind(ident: Identity, topic_filter: str) -> Optional[str]:
    """Which IoT Hub feature a SUBSCRIBE asks for; None if not allowed."""
    if topic_filter.startswith("$iothub/twin/res/") and topic_filter.endswith("#"):
        return "twin_res"
    if topic_filter in ("$iothub/twin/PATCH/properties/desired/#", "$iothub/twin/PATCH/properties/desired/?$version=#"):
        return "twin_desired"
    if topic_filter == "$iothub/methods/POST/#":
        return "methods"
    if not ident.module_id and topic_filter in (f"devices/{ident.device_id}/messages/devicebound/#",
                                                f"devices/{ident.device_id}/messages/devicebound/"):
        return "c2d"
    if ident.module_id and topic_filter == f"{ident.topic_base}/inputs/#":
        return "inputs"
    return None


@functools.lru_cache(maxsize=4096)
def property_bag_json(bag: str) -> str:
    """The stored (JSON) form of a D2C property bag. Devices send the same
    few bags again and again, and decoding them is a large part of the
    per-message cost, hence the memo."""
    return json.dumps(parse_property_bag(bag))


def parse_property_bag(bag: str) -> Dict[str, Optional[str]]:
    """`k=v&k2=v2` URL-encoded; a key without `=` has the value null. (Hand
    parsed like the SDKs do: parse_qs would turn `+` into a space.)"""
    props: Dict[str, Optional[str]] = {}
    unquote = urllib.parse.unquote if "%" in bag else str
    for part in bag.strip("/").split("&"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        props[unquote(key)] = unquote(value) if sep else None
    return props


def encode_property_bag(props: Dict[str, Optional[str]]) -> str:
    q = urllib.parse.quote
    return "&".join(q(k, safe="") if v is None else f"{q(k, safe='')}={q(v, safe='')}" for k, v in props.items())


def query_param(topic: str, name: str) -> Optional[str]:
    _, _, query = topic.partition("?")
    return parse_property_bag(query).get(name)


@dataclass
class HubCore:
    """State shared by the MQTT listener and the HTTP service API."""

    store: Store
    pki: Pki
    host_names: Set[str]
    connections: Dict[str, Connection] = field(default_factory=dict)
    _acks: list = field(default_factory=list)
    _flush_scheduled: bool = False
    _method_waiters: Dict[str, Tuple[Connection, "asyncio.Future[Tuple[int, bytes]]"]] = field(default_factory=dict)
    _rids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(1))
    _ssl: Optional[ssl.SSLContext] = None
    _ssl_stamp: Tuple[float, ...] = ()
    _deadlines: Dict[asyncio.StreamWriter, float] = field(default_factory=dict)
    _tasks: Set["asyncio.Task[None]"] = field(default_factory=set)

    # -- TLS ---------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """The listener's server context, built once; refresh_trust() adds
        client certificates registered later."""
        if self._ssl is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
            ctx.load_verify_locations(cafile=str(self.pki.ca_cert))
            # Optional: SAS clients send no certificate; X.509 ones must
            # chain to the CA or be a registered self-signed certificate.
            ctx.verify_mode = ssl.CERT_OPTIONAL
            self._ssl = ctx
            self.refresh_trust()
        return self._ssl

    def refresh_trust(self) -> None:
        """Load DIR/trusted-clients.pem into the live context when it changed
        (`hub add --cert` may write it while the hub runs). OpenSSL ignores
        certificates it already holds, and the store is shared by later
        handshakes."""
        path = self.pki.trusted_clients
        stamp = (path.stat().st_mtime_ns,) if path.exists() else ()
        if stamp and stamp != self._ssl_stamp and self._ssl is not None:
            self._ssl.load_verify_locations(cafile=str(path))
        self._ssl_stamp = stamp

    async def housekeeping(self, interval: float = 1.0) -> None:
        """Once a second: drop clients past their deadline (CONNECT not sent
        in time, keep-alive expired, SAS token expired, as IoT Hub does) and
        reload the client trust list. One
        sweep is far cheaper than a timer around every read."""
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for writer, deadline in list(self._deadlines.items()):
                if now > deadline and writer.transport is not None:
                    log.info("%s: timed out (no CONNECT, or keep-alive expired)", writer.get_extra_info("peername"))
                    self._deadlines.pop(writer, None)
                    writer.transport.abort()
            wall = time.time()
            for conn in list(self.connections.values()):
                if conn.expires is not None and wall >= conn.expires:
                    log.info("%s: SAS token expired: disconnected (the device must reconnect with a new one)",
                             conn.ident)
                    self._forget(conn)
            self.refresh_trust()

    # -- connections ---------------------------------------------------------
    async def handle_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn: Optional[Connection] = None
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            self._deadlines[writer] = time.monotonic() + CONNECT_TIMEOUT
            conn = await self._connect(reader, writer)
            if conn is not None:
                await self._serve(reader, conn)
        except Disconnect as e:
            log.warning("%s %s: disconnected: %s", peer, conn.ident if conn else "", e)
        except (asyncio.TimeoutError, TimeoutError):
            log.info("%s %s: timed out", peer, conn.ident if conn else "")
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError) as e:
            log.info("%s %s: connection lost: %s", peer, conn.ident if conn else "", e)
        except Exception:  # noqa: BLE001 - a bug met by one client must not reach the others
            log.exception("%s %s: internal error, connection closed", peer, conn.ident if conn else "")
        finally:
            self._deadlines.pop(writer, None)
            if conn is not None:
                self._forget(conn)
            writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    def _forget(self, conn: Connection) -> None:
        conn.close()
        if self.connections.get(conn.ident.client_id) is conn:
            del self.connections[conn.ident.client_id]
            log.info("%s: disconnected", conn.ident)
        for rid, (c, fut) in list(self._method_waiters.items()):
            if c is conn and not fut.done():
                fut.set_exception(ConnectionError("device disconnected"))

    async def _read_packet(self, reader: asyncio.StreamReader, limit: int):
        # The fixed header is decoded here rather than by amqtt's
        # MQTTFixedHeader.from_stream, which awaits one byte at a time through
        # two adapter layers: this is the hub's hottest path.
        head = await reader.readexactly(2)
        length, shift, byte = head[1] & 0x7F, 7, head[1]
        while byte & 0x80:
            if shift > 21:
                raise Disconnect("malformed remaining length")
            byte = (await reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
        if length > limit:
            # Refuse before reading: a hostile length must not cost memory.
            raise Disconnect(f"packet of {length} bytes is over the {limit} byte limit")
        header = MQTTFixedHeader(head[0] >> 4, head[0] & 0x0F, length)
        body = await reader.readexactly(length)
        try:
            return await packet_class(header).from_stream(BufferReader(body), header)
        except Exception as e:  # noqa: BLE001 - any decoding failure is a malformed packet
            raise Disconnect(f"malformed packet type {header.packet_type}: {e!r}") from None

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Optional[Connection]:
        packet = await self._read_packet(reader, MAX_CONNECT)
        if not isinstance(packet, ConnectPacket):
            raise Disconnect("first packet is not CONNECT")

        def refuse(code: int, why: str) -> None:
            writer.write(ConnackPacket.build(0, code).to_bytes())
            log.warning("%s: CONNECT refused (code %d): %s", writer.get_extra_info("peername"), code, why)

        if packet.proto_name != "MQTT" or packet.proto_level != 4:
            refuse(REFUSED_PROTOCOL, f"protocol {packet.proto_name} level {packet.proto_level}; only MQTT 3.1.1")
            return None
        client_id = packet.client_id or ""
        try:
            ident = parse_username(packet.username or "", client_id, self.host_names)
        except AuthError as e:
            refuse(e.connack_code, str(e))
            return None
        record = self.store.get_identity(ident)
        try:
            if record is None:
                raise AuthError(f"{ident} is not registered")
            if record["status"] != "enabled":
                raise AuthError(f"{ident} is disabled")
            auth, expires = self._authenticate(ident, record, packet.password, writer)
        except AuthError as e:
            refuse(REFUSED_AUTH, f"{ident}: {e}")
            return None
        old = self.connections.get(client_id)
        if old is not None:
            log.info("%s: a new connection replaces the previous one", ident)
            self._forget(old)
        conn = Connection(ident, writer, auth=auth, keepalive=packet.keep_alive, expires=expires)
        self.connections[client_id] = conn
        conn.send(ConnackPacket.build(0, 0))
        log.info("%s: connected (%s, keep-alive %ds)", ident, auth, packet.keep_alive)
        return conn

    def _authenticate(self, ident: Identity, record: dict, password: Optional[str],
                      writer: asyncio.StreamWriter) -> Tuple[str, Optional[float]]:
        """(how it authenticated, when the credential expires or None)."""
        if record["auth_type"] == "sas":
            if not password:
                raise AuthError("no SAS token (password) given")
            return "sas", verify_sas(password, _sas_host(password, self.host_names), ident,
                                     (record["primary_key"], record["secondary_key"]))
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True) if sslobj else None
        if not der:
            raise AuthError("X.509 identity but the client sent no certificate")
        if record["auth_type"] == "selfSigned":
            prints = {thumbprint(der, "sha1"), thumbprint(der, "sha256")}
            if not prints & {record["primary_thumbprint"], record["secondary_thumbprint"]}:
                raise AuthError("client certificate thumbprint does not match the registered ones")
            return "x509-thumbprint", None
        cn = self.pki.issued_by_ca(der)
        if cn is None or cn not in (ident.device_id, ident.client_id):
            raise AuthError(f"client certificate is not issued by the hub CA for {ident.device_id} (CN {cn!r})")
        return "x509-ca", None

    async def _serve(self, reader: asyncio.StreamReader, conn: Connection) -> None:
        timeout = min(conn.keepalive * 1.5, KEEPALIVE_CAP) if conn.keepalive else KEEPALIVE_CAP
        writer = conn.writer
        while not conn.closed:
            self._deadlines[writer] = time.monotonic() + timeout
            packet = await self._read_packet(reader, MAX_PACKET)
            kind = packet.fixed_header.packet_type
            if kind == PUBLISH:
                self._on_publish(conn, packet)
            elif kind == PUBACK:
                c2d_id = conn.inflight_c2d.pop(packet.packet_id, None)
                if c2d_id is not None:
                    self.store.c2d_delivered(c2d_id)
            elif kind in (SUBSCRIBE, UNSUBSCRIBE) and not packet.payload.topics:
                raise Disconnect("(UN)SUBSCRIBE without a topic filter [MQTT-3.8.3-3, 3.10.3-2]")
            elif kind == SUBSCRIBE:
                self._on_subscribe(conn, packet)
            elif kind == UNSUBSCRIBE:
                for topic in packet.payload.topics:
                    conn.subscriptions.pop(subscription_kind(conn.ident, topic) or "", None)
                conn.send(UnsubackPacket.build(packet.variable_header.packet_id))
            elif kind == PINGREQ:
                conn.send(PingRespPacket.build())
            elif kind == DISCONNECT:
                return
            elif kind == CONNECT:
                raise Disconnect("second CONNECT on a connection")
            else:
                raise Disconnect(f"unexpected packet type {kind} (QoS 2 flows are not supported by IoT Hub)")
            transport = writer.transport
            if transport is not None and transport.get_write_buffer_size() > SLOW_READER_BYTES:
                await asyncio.wait_for(writer.drain(), 30)

    # -- device to cloud -----------------------------------------------------
    def _on_publish(self, conn: Connection, packet: PublishPacket) -> None:
        topic, body, qos = packet.topic_name or "", packet.data or b"", packet.qos or 0
        if qos > 1:
            raise Disconnect(f"QoS {qos} publish on {topic!r}: IoT Hub supports QoS 0 and 1 only")
        if "#" in topic or "+" in topic:
            raise Disconnect(f"wildcard in a topic name {topic!r} [MQTT-3.3.2-2]")
        if len(body) > MAX_MESSAGE:
            raise Disconnect(f"message of {len(body)} bytes is over the {MAX_MESSAGE} byte limit")
        events = f"{conn.ident.topic_base}/messages/events"
        if topic == events or topic.startswith(events + "/"):
            self.store.add_message(conn.ident, property_bag_json(topic[len(events):]), body)
        elif topic.startswith("$iothub/twin/"):
            self._on_twin(conn, topic, body)
        elif topic.startswith("$iothub/methods/res/"):
            self._on_method_response(conn, topic, body)
        else:
            raise Disconnect(f"not authorized to publish on {topic!r}")
        # Every PUBACK goes through the batch so that they leave in arrival
        # order (MQTT 4.6) and only after the commit.
        if qos:
            self._acks.append((conn, packet.packet_id))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Commit the batch of received messages, then acknowledge them (in
        arrival order, as MQTT requires)."""
        self._flush_scheduled = False
        acks, self._acks = self._acks, []
        self.store.commit()
        # One write (one TLS record) per connection for all its PUBACKs.
        # PUBACK is 4 fixed bytes; amqtt's builder costs more than the rest
        # of the acknowledgement path on this hot path.
        out: Dict[Connection, bytearray] = {}
        for conn, pid in acks:
            out.setdefault(conn, bytearray()).extend(b"\x40\x02" + pid.to_bytes(2, "big"))
        for conn, data in out.items():
            if not conn.closed:
                conn.writer.write(data)

    def _on_twin(self, conn: Connection, topic: str, body: bytes) -> None:
        rid = query_param(topic, "$rid") or ""
        q = urllib.parse.quote
        if topic.startswith("$iothub/twin/GET/"):
            try:
                twin = self.store.device_twin(conn.ident)
            except KeyError:
                raise Disconnect("identity deleted") from None
            self._twin_reply(conn, f"$iothub/twin/res/200/?$rid={q(rid)}", json.dumps(twin).encode())
        elif topic.startswith("$iothub/twin/PATCH/properties/reported/"):
            try:
                patch = json.loads(body)
                version = self.store.patch_reported(conn.ident, patch)
            except KeyError:
                raise Disconnect("identity deleted") from None
            except (ValueError, TypeError, AttributeError) as e:
                log.warning("%s: reported patch refused: %s", conn.ident, e)
                self._twin_reply(conn, f"$iothub/twin/res/400/?$rid={q(rid)}",
                                 json.dumps({"message": str(e)}).encode())
                return
            self._twin_reply(conn, f"$iothub/twin/res/204/?$rid={q(rid)}&$version={version}", b"")
        else:
            raise Disconnect(f"not authorized to publish on {topic!r}")

    def _twin_reply(self, conn: Connection, topic: str, body: bytes) -> None:
        if "twin_res" in conn.subscriptions:
            conn.publish(topic, body)

    def _on_method_response(self, conn: Connection, topic: str, body: bytes) -> None:
        parts = topic.split("/")
        rid = query_param(topic, "$rid") or ""
        waiter = self._method_waiters.get(rid)
        if waiter is None or waiter[0] is not conn:
            log.info("%s: method response for unknown request %r ignored", conn.ident, rid)
            return
        try:
            status = int(parts[3])
        except (IndexError, ValueError):
            raise Disconnect(f"method response topic {topic!r} has no status") from None
        if not waiter[1].done():
            waiter[1].set_result((status, body))

    def _on_subscribe(self, conn: Connection, packet) -> None:
        codes = []
        for topic_filter, qos in packet.payload.topics:
            kind = subscription_kind(conn.ident, topic_filter)
            if kind is None:
                log.warning("%s: subscription to %r refused", conn.ident, topic_filter)
                codes.append(0x80)
            else:
                conn.subscriptions[kind] = min(qos, 1)
                codes.append(min(qos, 1))
        conn.send(SubackPacket.build(packet.variable_header.packet_id, codes))
        if {"c2d", "inputs"} & conn.subscriptions.keys():
            self.deliver_c2d(conn.ident)

    # -- cloud to device -----------------------------------------------------
    def deliver_c2d(self, ident: Identity) -> None:
        """Send queued C2D messages (a module gets them as input messages on
        `inputs/{input}`; IoT Hub itself only routes those through Edge)."""
        conn = self.connections.get(ident.client_id)
        if conn is None:
            return
        kind = "inputs" if ident.module_id else "c2d"
        if kind not in conn.subscriptions:
            return
        sent = set(conn.inflight_c2d.values())
        for msg in self.store.pending_c2d(ident):
            if msg["id"] in sent:
                continue
            props = dict(msg["properties"])
            if ident.module_id:
                name = props.pop("$.input", None) or "input1"
                topic = f"{ident.topic_base}/inputs/{name}/{encode_property_bag(props)}"
            else:
                props.setdefault("$.mid", str(msg["id"]))
                props["$.to"] = f"/devices/{ident.device_id}/messages/devicebound"
                topic = f"devices/{ident.device_id}/messages/devicebound/{encode_property_bag(props)}"
            qos = conn.subscriptions[kind]
            pid = conn.publish(topic, bytes(msg["body"]), qos)
            if pid is None:
                self.store.c2d_delivered(msg["id"])
            else:
                conn.inflight_c2d[pid] = msg["id"]

    def push_desired(self, ident: Identity, patch_with_version: dict) -> bool:
        conn = self.connections.get(ident.client_id)
        if conn is None or "twin_desired" not in conn.subscriptions:
            return False
        conn.publish(f"$iothub/twin/PATCH/properties/desired/?$version={patch_with_version['$version']}",
                     json.dumps(patch_with_version).encode())
        return True

    async def invoke(self, ident: Identity, method: str, payload, timeout: float) -> Tuple[int, object]:
        """A direct method call. Raises LookupError if the identity is not
        connected and subscribed to methods, TimeoutError if it does not answer."""
        conn = self.connections.get(ident.client_id)
        if conn is None or "methods" not in conn.subscriptions:
            raise LookupError(f"{ident} is not online (not connected or not subscribed to methods)")
        rid = format(next(self._rids), "x")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._method_waiters[rid] = (conn, fut)
        try:
            conn.publish(f"$iothub/methods/POST/{urllib.parse.quote(method, safe='')}/?$rid={rid}",
                         json.dumps(payload).encode())
            status, body = await asyncio.wait_for(fut, timeout)
        finally:
            self._method_waiters.pop(rid, None)
        try:
            return status, json.loads(body) if body else None
        except ValueError:
            return status, body.decode("utf-8", "replace")

    async def shutdown(self, timeout: float = 5) -> None:
        """Close every client (connected or not yet) and let the handlers
        finish, so nothing is cancelled mid-packet; then commit."""
        for conn in list(self.connections.values()):
            self._forget(conn)
        for writer in list(self._deadlines):
            if writer.transport is not None:
                writer.transport.abort()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        self.store.commit()


def _sas_host(token: str, host_names: Set[str]) -> str:
    """The host part of the token's resource; it must be one of the hub's names
    (verify_sas then checks the whole resource)."""
    for part in token.split(" ", 1)[-1].split("&"):
        if part.startswith("sr="):
            host = urllib.parse.unquote(part[3:]).split("/", 1)[0]
            if host.lower() in host_names:
                return host
            raise AuthError(f"SAS resource host {host!r} is not this hub")
    raise AuthError("SAS token has no sr")

