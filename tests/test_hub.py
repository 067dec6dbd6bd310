"""The emulated IoT Hub, exercised by raw MQTT clients (paho, the device
SDK's own MQTT library) on free ports: authentication and its refusals,
topic authorization, limits, twins, methods, C2D, restart, hostile clients,
the CLI, the HTTP API and the web page. The official SDK is in test_hub_sdk.py."""

from __future__ import annotations

import json
import queue
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

import paho.mqtt.client as paho
import pytest
from cryptography import x509

from defender_iot.hub import HubApiError, HubProcess
from defender_iot.hub.auth import Identity, sas_token

MODULE = "DefenderIotMicroAgent"


class Mqtt:
    """A paho client with its events in queues."""

    def __init__(self, hub: HubProcess, device: str, module: str = "", key: Optional[str] = None,
                 password: Optional[str] = None, cert: Optional[Path] = None, keyfile: Optional[Path] = None,
                 keepalive: int = 60, host: str = "localhost"):
        self.ident = Identity(device, module)
        self.connack: "queue.Queue[int]" = queue.Queue()
        self.received: "queue.Queue[paho.MQTTMessage]" = queue.Queue()
        self.subacks: "queue.Queue[tuple]" = queue.Queue()
        self.disconnected = threading.Event()
        c = paho.Client(client_id=self.ident.client_id, clean_session=False, protocol=paho.MQTTv311)
        c.tls_set(ca_certs=str(hub.ca), certfile=str(cert) if cert else None, keyfile=str(keyfile) if keyfile else None)
        if key and password is None:
            password = sas_token(host, self.ident, key)
        c.username_pw_set(f"{host}/{self.ident.client_id}/?api-version=2021-04-12", password)
        c.on_connect = lambda cl, ud, flags, rc: self.connack.put(rc)
        c.on_disconnect = lambda cl, ud, rc: self.disconnected.set()
        c.on_message = lambda cl, ud, msg: self.received.put(msg)
        c.on_subscribe = lambda cl, ud, mid, granted: self.subacks.put(granted)
        c.reconnect_delay_set(60, 120)  # never reconnect within a test
        self.client = c
        self.keepalive = keepalive
        self.port = hub.mqtt_port

    def connect(self, timeout: float = 10) -> int:
        self.client.connect("127.0.0.1", self.port, keepalive=self.keepalive)
        self.client.loop_start()
        return self.connack.get(timeout=timeout)

    def subscribe(self, topic: str, qos: int = 1) -> tuple:
        self.client.subscribe(topic, qos)
        return self.subacks.get(timeout=10)

    def publish(self, topic: str, body: bytes, qos: int = 1) -> bool:
        """True if the hub acknowledged (QoS 1) within 5 s."""
        info = self.client.publish(topic, body, qos)
        info.wait_for_publish(5)
        return info.is_published()

    def events_topic(self, bag: str = "") -> str:
        return f"{self.ident.topic_base}/messages/events/{bag}"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubProcess(tmp_path_factory.mktemp("hub")) as h:
        yield h


@pytest.fixture
def clients():
    made = []
    yield made
    for c in made:
        c.close()


def new_identity(hub: HubProcess, device: str, module: str = "") -> str:
    return hub.client.add_identity(device, module or None)["authentication"]["symmetricKey"]["primaryKey"]


def connect(hub, clients, device, module="", **kw) -> Mqtt:
    m = Mqtt(hub, device, module, **kw)
    clients.append(m)
    assert m.connect() == 0
    return m


def test_server_certificate_names_and_connection_string(tmp_path):
    out = subprocess.run([sys.executable, "-m", "defender_iot.cli", "hub", "add", "dev1", "--module", MODULE,
                          "--data", str(tmp_path)], check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    fields = dict(p.split("=", 1) for p in out.split(";"))
    assert fields["HostName"] == "localhost" and fields["DeviceId"] == "dev1" and fields["ModuleId"] == MODULE
    assert len(fields["SharedAccessKey"]) == 44
    again = subprocess.run([sys.executable, "-m", "defender_iot.cli", "hub", "add", "dev1", "--module", MODULE,
                            "--data", str(tmp_path)], check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    assert again == out
    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(san.get_values_for_type(x509.DNSName)) | {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    assert {"localhost", "127.0.0.1", "10.0.2.100", "10.0.2.2"} <= names
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)


def test_registering_again_keeps_the_keys(hub):
    first = hub.connection_string("again1", MODULE)
    assert hub.connection_string("again1", MODULE) == first
    assert hub.client.add_identity("again1", MODULE)["connectionString"] == first
    fresh = hub.client.request("PUT", "/devices/again1/modules/" + MODULE,
                               {"authentication": {"symmetricKey": {"primaryKey": "A" * 43 + "="}}})
    assert fresh["connectionString"].endswith("SharedAccessKey=" + "A" * 43 + "=")


def test_device_telemetry_with_properties_is_stored(hub, clients):
    key = new_identity(hub, "tele1")
    m = connect(hub, clients, "tele1", key=key)
    body = {"Events": [{"EventType": "Security", "Name": "Heartbeat", "Payload": [{}]}]}
    bag = "%24.ct=application%2Fjson&%24.ce=utf-8&%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1&k%20x=a%2Bb&flag"
    assert m.publish(m.events_topic(bag), json.dumps(body).encode())
    msgs = hub.client.wait_for_messages(lambda ms: len(ms) == 1, device="tele1")
    assert msgs[0]["body"] == body and msgs[0]["module"] is None
    assert msgs[0]["properties"] == {"$.ct": "application/json", "$.ce": "utf-8",
                                     "$.ifid": "urn:azureiot:Security:SecurityAgent:1", "k x": "a+b", "flag": None}


def test_module_identity_and_its_own_topic(hub, clients):
    key = new_identity(hub, "mod1", MODULE)
    m = connect(hub, clients, "mod1", MODULE, key=key)
    assert m.publish(m.events_topic(), b"plain text")
    msgs = hub.client.wait_for_messages(lambda ms: len(ms) == 1, device="mod1", module=MODULE)
    assert msgs[0]["body"] == "plain text"


@pytest.mark.parametrize("case", ["wrong key", "expired", "unknown device", "other identity's token",
                                  "no password", "bad username"])
def test_bad_credentials_are_refused(hub, clients, case):
    key = new_identity(hub, "auth1")
    other = new_identity(hub, "auth2")
    ident = Identity("auth1")
    password = {
        "wrong key": sas_token("localhost", ident, other),
        "expired": sas_token("localhost", ident, key, ttl=-10),
        "unknown device": None,
        "other identity's token": sas_token("localhost", Identity("auth2"), other),
        "no password": None,
        "bad username": sas_token("localhost", ident, key),
    }[case]
    device = "nosuch" if case == "unknown device" else "auth1"
    m = Mqtt(hub, device, password=password, key=key if case == "unknown device" else None)
    if case == "bad username":
        m.client.username_pw_set("localhost/auth1", password)
    clients.append(m)
    rc = m.connect()
    assert rc in (4, 5), rc
    assert "auth1" not in hub.client.health()["connected"]


def test_expired_token_refused_but_fresh_one_accepted(hub, clients):
    key = new_identity(hub, "exp1")
    assert Mqtt(hub, "exp1", password=sas_token("localhost", Identity("exp1"), key, ttl=-1)).connect() == 5
    assert connect(hub, clients, "exp1", key=key)


def test_module_cannot_publish_on_another_devices_topic(hub, clients):
    key = new_identity(hub, "mallory", MODULE)
    new_identity(hub, "victim")
    m = connect(hub, clients, "mallory", MODULE, key=key)
    m.client.publish("devices/victim/messages/events/", b'{"forged": true}', 1)
    assert m.disconnected.wait(10), "the hub must drop a client publishing on another identity's topic"
    # the device's own (not the module's) topic is another identity too
    m2 = Mqtt(hub, "mallory", MODULE, key=key)
    clients.append(m2)
    assert m2.connect() == 0
    m2.client.publish("devices/mallory/messages/events/", b"{}", 1)
    assert m2.disconnected.wait(10)
    assert hub.client.messages(device="victim") == [] and hub.client.messages(device="mallory") == []


def test_oversize_message_disconnects_and_limit_size_is_accepted(hub, clients):
    key = new_identity(hub, "big1")
    m = connect(hub, clients, "big1", key=key)
    assert m.publish(m.events_topic(), b"x" * (256 * 1024))
    m.client.publish(m.events_topic(), b"x" * (256 * 1024 + 1), 1)
    assert m.disconnected.wait(10)
    msgs = hub.client.messages(device="big1")
    assert [x["size"] for x in msgs] == [256 * 1024]


def test_qos2_publish_disconnects(hub, clients):
    key = new_identity(hub, "qos2")
    m = connect(hub, clients, "qos2", key=key)
    m.client.publish(m.events_topic(), b"{}", 2)
    assert m.disconnected.wait(10)
    assert hub.client.messages(device="qos2") == []


def test_subscriptions_outside_the_identity_are_refused(hub, clients):
    key = new_identity(hub, "sub1")
    m = connect(hub, clients, "sub1", key=key)
    assert m.subscribe("devices/other/messages/devicebound/#") == (128,)
    assert m.subscribe("#") == (128,)
    assert m.subscribe("$iothub/twin/res/#") == (1,)


def test_second_connection_with_same_client_id_drops_the_first(hub, clients):
    key = new_identity(hub, "dup1")
    first = connect(hub, clients, "dup1", key=key)
    second = connect(hub, clients, "dup1", key=key)
    assert first.disconnected.wait(10)
    assert not second.disconnected.is_set()
    assert second.publish(second.events_topic(), b"{}")


def test_twin_get_reported_and_desired(hub, clients):
    key = new_identity(hub, "twin1", MODULE)
    m = connect(hub, clients, "twin1", MODULE, key=key)
    m.subscribe("$iothub/twin/res/#")
    m.subscribe("$iothub/twin/PATCH/properties/desired/#")
    m.publish("$iothub/twin/GET/?$rid=1", b"")
    res = m.received.get(timeout=10)
    assert res.topic == "$iothub/twin/res/200/?$rid=1"
    assert json.loads(res.payload) == {"desired": {"$version": 1}, "reported": {"$version": 1}}
    m.publish("$iothub/twin/PATCH/properties/reported/?$rid=2", b'{"latest_state": "success", "a": {"b": 1}}')
    assert m.received.get(timeout=10).topic == "$iothub/twin/res/204/?$rid=2&$version=2"
    m.publish("$iothub/twin/PATCH/properties/reported/?$rid=3", b'{"a": null}')
    assert m.received.get(timeout=10).topic == "$iothub/twin/res/204/?$rid=3&$version=3"
    m.publish("$iothub/twin/PATCH/properties/reported/?$rid=4", b"[1]")
    assert m.received.get(timeout=10).topic.startswith("$iothub/twin/res/400/?$rid=4")
    twin = hub.client.set_desired("twin1", MODULE, {"Process_Disabled": True})
    push = m.received.get(timeout=10)
    assert push.topic == "$iothub/twin/PATCH/properties/desired/?$version=2"
    assert json.loads(push.payload) == {"Process_Disabled": True, "$version": 2}
    assert twin["properties"]["reported"] == {"latest_state": "success", "$version": 3}
    assert twin["properties"]["desired"] == {"Process_Disabled": True, "$version": 2}


def test_direct_method(hub, clients):
    key = new_identity(hub, "meth1")
    m = connect(hub, clients, "meth1", key=key)
    with pytest.raises(HubApiError) as offline:
        hub.client.invoke("meth1", None, "reboot", timeout=2)
    assert offline.value.status == 404
    m.subscribe("$iothub/methods/POST/#")

    def answer(cl, ud, msg):
        rid = msg.topic.split("$rid=")[1]
        cl.publish(f"$iothub/methods/res/201/?$rid={rid}", json.dumps({"got": json.loads(msg.payload),
                                                                      "topic": msg.topic}), 1)
    m.client.on_message = answer
    result = hub.client.invoke("meth1", None, "reboot", {"delay": 3}, timeout=5)
    assert result["status"] == 201
    assert result["payload"]["got"] == {"delay": 3}
    assert result["payload"]["topic"].startswith("$iothub/methods/POST/reboot/?$rid=")
    m.client.on_message = lambda *a: None
    with pytest.raises(HubApiError) as timeout:
        hub.client.invoke("meth1", None, "reboot", timeout=1)
    assert timeout.value.status == 504


def test_c2d_queued_until_subscribed_then_delivered(hub, clients):
    key = new_identity(hub, "c2d1")
    msg_id = hub.client.send_c2d("c2d1", None, {"cmd": "scan"}, {"prio": "high"})
    m = connect(hub, clients, "c2d1", key=key)
    m.subscribe("devices/c2d1/messages/devicebound/#")
    got = m.received.get(timeout=10)
    assert got.topic.startswith("devices/c2d1/messages/devicebound/")
    assert "prio=high" in got.topic and "%24.to=%2Fdevices%2Fc2d1%2Fmessages%2Fdevicebound" in got.topic
    assert json.loads(got.payload) == {"cmd": "scan"}
    deadline = time.monotonic() + 10
    while hub.client.request("GET", f"/messages/deviceBound/{msg_id}")["delivered"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_x509_identities(hub, clients, tmp_path):
    data = hub.data_dir
    run = [sys.executable, "-m", "defender_iot.cli", "hub", "add", "--data", str(data)]
    out = subprocess.run(run + ["x509dev", "--x509"], check=True, stdout=subprocess.PIPE, text=True).stdout
    assert out.strip() == "HostName=localhost;DeviceId=x509dev;x509=true"
    cert, key = data / "identities" / "x509dev.pem", data / "identities" / "x509dev.key"
    m = connect(hub, clients, "x509dev", cert=cert, keyfile=key)
    assert m.publish(m.events_topic(), b"{}")
    # CA-signed type: the CN must name the identity
    subprocess.run(run + ["cadev", "--x509-ca"], check=True, stdout=subprocess.PIPE)
    connect(hub, clients, "cadev", cert=data / "identities" / "cadev.pem", keyfile=data / "identities" / "cadev.key")
    assert Mqtt(hub, "cadev", cert=cert, keyfile=key).connect() == 5  # x509dev's certificate
    # a certificate of another registered identity, or none, is refused
    assert Mqtt(hub, "x509dev", cert=data / "identities" / "cadev.pem",
                keyfile=data / "identities" / "cadev.key").connect() == 5
    assert Mqtt(hub, "x509dev").connect() == 5


def test_self_signed_certificate_registered_while_running(hub, clients, tmp_path):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "selfdev")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2)).sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "c.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    subprocess.run([sys.executable, "-m", "defender_iot.cli", "hub", "add", "selfdev", "--cert", str(tmp_path / "c.pem"),
                    "--data", str(hub.data_dir)], check=True, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 15  # the hub reloads its client trust list every second
    while True:
        m = Mqtt(hub, "selfdev", cert=tmp_path / "c.pem", keyfile=tmp_path / "c.key")
        clients.append(m)
        try:
            if m.connect(timeout=3) == 0:
                break
        except (ssl.SSLError, queue.Empty, ConnectionError):
            pass  # TLS 1.3: an untrusted client certificate is refused after connect() returns
        assert time.monotonic() < deadline, "self-signed certificate still not trusted"
        time.sleep(0.5)
    assert m.publish(m.events_topic(), b"{}")


def test_keepalive_drops_a_silent_client(hub):
    key = new_identity(hub, "ka1")
    m = Mqtt(hub, "ka1", key=key, keepalive=2)
    m.client.connect("127.0.0.1", hub.mqtt_port, keepalive=2)
    t0 = time.monotonic()
    m.client.loop(timeout=1)  # CONNACK, then never again: no PINGREQ
    assert "ka1" in hub.client.health()["connected"]
    while "ka1" in hub.client.health()["connected"]:
        assert time.monotonic() - t0 < 15, "a client silent for 1.5 x its keep-alive must be dropped"
        time.sleep(0.2)
    assert time.monotonic() - t0 >= 2.9, "dropped before 1.5 x keep-alive"
    m.client.socket().close()


def _tls(hub) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(hub.ca))
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", hub.mqtt_port), timeout=5),
                           server_hostname="localhost")


def test_hostile_clients_do_not_stop_service(hub, clients):
    key = new_identity(hub, "steady")
    good = connect(hub, clients, "steady", key=key)
    hostile = []
    plain = socket.create_connection(("127.0.0.1", hub.mqtt_port))  # not TLS at all
    plain.sendall(b"GET / HTTP/1.0\r\n\r\n" * 10)
    hostile.append(plain)
    for payload in (b"\x10\xff\xff\xff\x7f",                   # CONNECT announcing 256 MB
                    b"\x10\x05garbage",                        # malformed CONNECT
                    b"\xf0\x00",                               # reserved packet type
                    b"\x30\x02\x00\x00",                       # PUBLISH before CONNECT
                    b"\x10\x80"):                              # truncated length, then silence
        s = _tls(hub)
        s.sendall(payload)
        hostile.append(s)
    half_open = [_tls(hub) for _ in range(20)]                 # TLS, then nothing
    flood = []
    for i in range(100):                                       # CONNECT flood with bad credentials
        m = Mqtt(hub, "steady", password="SharedAccessSignature sr=x&sig=y&se=1")
        m.client.connect("127.0.0.1", hub.mqtt_port)
        flood.append(m)
    for m in flood:
        m.client.loop(timeout=0.05)
    for i in range(20):
        assert good.publish(good.events_topic(), json.dumps({"n": i}).encode())
    assert len(hub.client.messages(device="steady")) == 20
    assert hub.client.health()["connected"] == sorted(hub.client.health()["connected"])
    for s in hostile + half_open:
        s.close()
    for m in flood:
        m.client.socket() and m.client.socket().close()


def test_restart_keeps_registry_messages_and_twins(tmp_path, clients):
    with HubProcess(tmp_path / "hub") as h:
        key = new_identity(h, "persist", MODULE)
        m = connect(h, clients, "persist", MODULE, key=key)
        assert m.publish(m.events_topic(), b'{"n": 1}')
        h.client.set_desired("persist", MODULE, {"Heartbeat_MessageFrequency": "High"})
        m.publish("$iothub/twin/PATCH/properties/reported/?$rid=1", b'{"latest_state": "success"}')
        m.close()
        h.stop()
        h.start()
        m2 = connect(h, clients, "persist", MODULE, key=key)
        assert m2.publish(m2.events_topic(), b'{"n": 2}')
        assert [x["body"] for x in h.client.messages(device="persist")] == [{"n": 1}, {"n": 2}]
        twin = h.client.get_twin("persist", MODULE)["properties"]
        assert twin["desired"]["Heartbeat_MessageFrequency"] == "High"
        assert twin["reported"]["latest_state"] == "success"


def _agent_message(device_events):
    return json.dumps({"AgentVersion": "0.1.0", "AgentId": "a", "MessageSchemaVersion": "1.0",
                       "Events": device_events}).encode()


def test_cli_messages_filters_and_web_page(hub, clients):
    key = new_identity(hub, "web1", MODULE)
    m = connect(hub, clients, "web1", MODULE, key=key)
    m.publish(m.events_topic(), _agent_message([{"EventType": "Security", "Name": "Heartbeat", "Payload": [{}]}]))
    m.publish(m.events_topic(), _agent_message([{"EventType": "Security", "Name": "Baseline", "Payload": [
        {"Id": "ssh-root-login", "Result": "Fail"}, {"Id": "tmp-noexec", "Result": "Pass"},
        {"Id": "aslr", "Result": "Pass"}]}]))
    m.publish(m.events_topic(), _agent_message([{"EventType": "Alert", "Name": "BruteForce", "Payload": [
        {"Severity": "High", "State": "Active", "Description": "<many> failed logins"}]}]))
    hub.client.wait_for_messages(lambda ms: len(ms) == 3, device="web1")
    cli = [sys.executable, "-m", "defender_iot.cli", "hub", "messages", "--data", str(hub.data_dir), "--device", "web1"]
    lines = subprocess.run(cli + ["--json", "--alert", "BruteForce"], check=True, stdout=subprocess.PIPE,
                           text=True).stdout.splitlines()
    assert [json.loads(x)["body"]["Events"][0]["Name"] for x in lines] == ["BruteForce"]
    lines = subprocess.run(cli + ["--json", "--type", "Heartbeat"], check=True, stdout=subprocess.PIPE,
                           text=True).stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["module"] == MODULE
    assert subprocess.run(cli + ["--alert", "Nope"], check=True, stdout=subprocess.PIPE, text=True).stdout == ""
    page = urllib.request.urlopen(f"http://127.0.0.1:{hub.http_port}/", timeout=5).read().decode()
    assert "web1" in page and "Fail 1, Pass 2; failing: ssh-root-login" in page
    assert "BruteForce" in page and "&lt;many&gt; failed logins" in page and "<many>" not in page


def test_cli_twin_invoke_c2d_against_running_hub(hub, clients):
    key = new_identity(hub, "cli1")
    m = connect(hub, clients, "cli1", key=key)
    m.subscribe("$iothub/twin/PATCH/properties/desired/#")
    base = [sys.executable, "-m", "defender_iot.cli", "hub"]
    out = subprocess.run(base + ["twin", "cli1", "--data", str(hub.data_dir), "--set-desired", '{"x": 1}'],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    assert json.loads(out)["properties"]["desired"] == {"x": 1, "$version": 2}
    assert json.loads(m.received.get(timeout=10).payload) == {"x": 1, "$version": 2}
    bad = subprocess.run(base + ["twin", "cli1", "--data", str(hub.data_dir), "--set-desired", "{x"],
                         stderr=subprocess.PIPE, text=True)
    assert bad.returncode == 2 and "--set-desired: not JSON" in bad.stderr
    off = subprocess.run(base + ["invoke", "cli1", "ping", "--data", str(hub.data_dir), "--timeout", "1"],
                         stderr=subprocess.PIPE, text=True)
    assert off.returncode == 2 and "404" in off.stderr
    m.subscribe("devices/cli1/messages/devicebound/#")
    subprocess.run(base + ["c2d", "cli1", "hello", "-p", "a=b", "--data", str(hub.data_dir)], check=True,
                   stdout=subprocess.PIPE)
    got = m.received.get(timeout=10)
    assert got.payload == b"hello" and "a=b" in got.topic


def test_http_api_errors(hub):
    with pytest.raises(HubApiError) as e:
        hub.client.get_twin("nobody")
    assert e.value.status == 404
    with pytest.raises(HubApiError) as e:
        hub.client.request("PATCH", "/twins/nobody", {"properties": {"desired": {"a": 1}}})
    assert e.value.status == 404
    new_identity(hub, "api1")
    with pytest.raises(HubApiError) as e:
        hub.client.request("PATCH", "/twins/api1", {"properties": {"desired": {"big": "x" * 40000}}})
    assert e.value.status == 400
    with pytest.raises(HubApiError) as e:
        hub.client.request("PUT", "/devices/bad%2Fid", {})
    assert e.value.status == 400
    spec = hub.client.request("GET", "/openapi.json")
    assert "/twins/{deviceId}" in spec["paths"] and spec["openapi"].startswith("3.")


def test_qos0_message_is_committed_without_further_traffic(hub, clients):
    key = new_identity(hub, "q0")
    m = connect(hub, clients, "q0", key=key)
    m.publish(m.events_topic(), b'{"qos": 0}', qos=0)
    cli = [sys.executable, "-m", "defender_iot.cli", "hub", "messages", "--data", str(hub.data_dir),
           "--device", "q0", "--json"]
    deadline = time.monotonic() + 20
    while not subprocess.run(cli, check=True, stdout=subprocess.PIPE, text=True).stdout:
        assert time.monotonic() < deadline, "a QoS 0 message stayed uncommitted"
        time.sleep(0.2)


def test_disabled_or_deleted_identity_cannot_connect(hub, clients):
    key = new_identity(hub, "gone1")
    m = connect(hub, clients, "gone1", key=key)
    hub.client.request("DELETE", "/devices/gone1")
    assert m.disconnected.wait(10), "deleting an identity drops its connection"
    assert Mqtt(hub, "gone1", key=key).connect() == 5
    key = new_identity(hub, "off1")
    hub.client.request("PUT", "/devices/off1", {"status": "disabled",
                                               "authentication": {"symmetricKey": {"primaryKey": key}}})
    assert Mqtt(hub, "off1", key=key).connect() == 5


def test_messages_follow_streams_new_messages(hub, clients):
    import select
    key = new_identity(hub, "follow1")
    m = connect(hub, clients, "follow1", key=key)
    assert m.publish(m.events_topic(), b'{"live": 0}')
    proc = subprocess.Popen([sys.executable, "-m", "defender_iot.cli", "hub", "messages", "--data",
                             str(hub.data_dir), "--device", "follow1", "--json", "--follow"],
                            stdout=subprocess.PIPE, text=True)

    def next_line() -> dict:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "hub messages --follow printed nothing in 30 s"
        return json.loads(proc.stdout.readline())
    try:
        assert next_line()["body"] == {"live": 0}  # what was there, then it follows
        assert m.publish(m.events_topic(), b'{"live": 1}')
        assert next_line()["body"] == {"live": 1}
    finally:
        proc.terminate()
        proc.wait(5)


def test_c2d_and_method_quotas(hub):
    new_identity(hub, "quota1")
    with pytest.raises(HubApiError) as e:
        hub.client.send_c2d("quota1", None, "x" * (64 * 1024 + 1))
    assert e.value.status == 400
    for i in range(50):
        hub.client.send_c2d("quota1", None, f"m{i}")
    with pytest.raises(HubApiError) as e:
        hub.client.send_c2d("quota1", None, "one too many")
    assert e.value.status == 403
    with pytest.raises(HubApiError) as e:
        hub.client.invoke("quota1", None, "m", "x" * (128 * 1024), timeout=1)
    assert e.value.status == 400


def test_half_open_connection_is_dropped_after_connect_deadline(hub):
    s = _tls(hub)  # TLS done, CONNECT never sent
    s.settimeout(20)
    t0 = time.monotonic()
    try:
        data = s.recv(1)
    except (ssl.SSLError, ConnectionError):
        data = b""
    assert data == b"" and time.monotonic() - t0 < 20  # CONNECT_TIMEOUT is 10 s, swept every second
    s.close()


def test_client_messages_pages_past_the_server_limit(hub, clients):
    key = new_identity(hub, "many1")
    m = connect(hub, clients, "many1", key=key)
    for i in range(10050):
        m.client.publish(m.events_topic(), b"{}", 1)
    msgs = hub.client.wait_for_messages(lambda ms: len(ms) == 10050, timeout=120, device="many1")
    assert len({x["id"] for x in msgs}) == 10050
    assert len(hub.client.messages(device="many1", limit=3)) == 3


def test_connection_closed_when_its_sas_token_expires(hub, clients):
    key = new_identity(hub, "ttl1")
    m = Mqtt(hub, "ttl1", password=sas_token("localhost", Identity("ttl1"), key, ttl=5))
    clients.append(m)
    assert m.connect() == 0
    assert m.disconnected.wait(20), "IoT Hub closes a connection whose SAS token has expired"


def test_second_hub_on_the_same_data_directory_is_refused(hub):
    proc = subprocess.run([sys.executable, "-m", "defender_iot.cli", "hub", "serve", "--data", str(hub.data_dir),
                           "--mqtt-port", "0", "--http-port", "0"], stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2
    assert "already serves this data directory" in proc.stderr
    assert hub.client.health()["status"] == "ok"


def test_add_writes_the_agents_credential_files(tmp_path):
    base = [sys.executable, "-m", "defender_iot.cli", "hub", "add", "--data", str(tmp_path / "hub")]
    out = subprocess.run(base + ["cred1", "--module", MODULE, "--out", str(tmp_path / "sas")], check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    path = tmp_path / "sas" / "connection_string.txt"
    assert path.read_text() == out and path.stat().st_mode & 0o077 == 0
    subprocess.run(base + ["cred2", "--x509", "--out", str(tmp_path / "x509")], check=True, stdout=subprocess.PIPE)
    cert = x509.load_pem_x509_certificate((tmp_path / "x509" / "certificate_public.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=cred2"
    assert (tmp_path / "x509" / "certificate_private.pem").stat().st_mode & 0o077 == 0
    assert (tmp_path / "x509" / "connection_string.txt").read_text().strip().endswith(";x509=true")


def _raw_connect(hub, device: str, key: str) -> ssl.SSLSocket:
    """A TLS socket after a valid CONNECT/CONNACK: the hostile bytes that
    follow are written by hand on purpose."""
    def s(x: str) -> bytes:
        return len(x.encode()).to_bytes(2, "big") + x.encode()
    body = (s("MQTT") + bytes([4, 0xC0]) + (60).to_bytes(2, "big") + s(device)
            + s(f"localhost/{device}/?api-version=2021-04-12") + s(sas_token("localhost", Identity(device), key)))
    sock = _tls(hub)
    sock.sendall(b"\x10" + bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    return sock


@pytest.mark.parametrize("packet", [
    b"\x82\x03\x00\x01\x00",                 # SUBSCRIBE with a truncated topic filter
    b"\x32\x04\xff\xff\x00\x01",             # PUBLISH whose topic length exceeds the packet
    b"\x62\x02\x00\x01",                     # PUBREL (QoS 2 flow)
    b"\x20\x02\x00\x00",                     # CONNACK sent by a client
    b"\x30\xff\xff\xff\xff\x01",             # remaining length longer than 4 bytes
    b"\x32\x80\x80\x80\x01",                 # PUBLISH announcing 2 MB
    b"\x30\x21\x00\x1fdevices/fuzz1/messages/events/#",     # wildcard in a topic name
])
def test_malformed_packets_after_connect_close_only_that_client(hub, clients, packet):
    key = new_identity(hub, "fuzz1")
    steady_key = new_identity(hub, "steady2")
    good = connect(hub, clients, "steady2", key=steady_key)
    sock = _raw_connect(hub, "fuzz1", key)
    sock.sendall(packet)
    sock.settimeout(5)
    try:
        assert sock.recv(16) == b""
    except (ssl.SSLError, ConnectionError):
        pass
    sock.close()
    assert "fuzz1" not in hub.client.health()["connected"]
    assert good.publish(good.events_topic(), b"{}")


def test_random_bytes_after_connect_never_reach_an_internal_error(hub, clients):
    import random
    rng = random.Random(5)
    key = new_identity(hub, "fuzz2")
    good = connect(hub, clients, "fuzz2b", key=new_identity(hub, "fuzz2b"))
    for _ in range(40):
        sock = _raw_connect(hub, "fuzz2", key)
        kind = rng.choice([0x30, 0x32, 0x82, 0xA2, 0x40, 0xC0, 0xE0, rng.randrange(256)])
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        sock.sendall(bytes([kind, len(body)]) + body)
        sock.close()
    assert good.publish(good.events_topic(), b"{}")
    assert "internal error" not in hub.log_path.read_text()


@pytest.mark.parametrize("broken, expected", [("hub.db", "not a usable hub database"),
                                              ("server.pem", "bad certificate or key")])
def test_broken_data_directory_is_a_one_line_error(tmp_path, broken, expected):
    data = tmp_path / "hub"
    subprocess.run([sys.executable, "-m", "defender_iot.cli", "hub", "add", "a", "--data", str(data)],
                   check=True, stdout=subprocess.PIPE)
    (data / broken).write_text("garbage\n")
    proc = subprocess.run([sys.executable, "-m", "defender_iot.cli", "hub", "serve", "--data", str(data),
                           "--mqtt-port", "0", "--http-port", "0"], stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr


def test_load_bench_script_runs_and_checks_what_it_counts():
    """bench/hub_load.py works (its figures are not asserted: speed belongs to the bench)."""
    bench = Path(__file__).resolve().parent.parent / "bench" / "hub_load.py"
    out = subprocess.run([sys.executable, str(bench), "--clients", "5", "--seconds", "1", "--json"],
                         check=True, stdout=subprocess.PIPE, text=True, timeout=120).stdout
    result = json.loads(out)
    assert result["connected"] == result["connected_by_hub"] == 5
    assert result["acked"] > 0 and result["stored"] >= result["acked"]


def test_hostname_option_is_in_the_server_certificate(tmp_path):
    data = tmp_path / "hub"
    subprocess.run([sys.executable, "-m", "defender_iot.cli", "hub", "add", "a", "--data", str(data)],
                   check=True, stdout=subprocess.PIPE)
    ca_before = (data / "ca.pem").read_bytes()
    proc = subprocess.Popen([sys.executable, "-m", "defender_iot.hub", "serve", "--data", str(data), "--mqtt-port",
                             "0", "--http-port", "0", "--hostname", "hub.example.test"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (data / "hub.json").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    cert = x509.load_pem_x509_certificate((data / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "hub.example.test"} <= set(san.get_values_for_type(x509.DNSName))
    assert (data / "ca.pem").read_bytes() == ca_before


def test_twin_replace_sends_the_device_what_makes_it_equal(hub, clients):
    key = new_identity(hub, "put1")
    m = connect(hub, clients, "put1", key=key)
    m.subscribe("$iothub/twin/PATCH/properties/desired/#")
    hub.client.set_desired("put1", None, {"a": 1, "nested": {"x": 1, "y": 2}, "gone": True})
    m.received.get(timeout=10)
    twin = hub.client.request("PUT", "/twins/put1", {"properties": {"desired": {"a": 1, "nested": {"x": 1},
                                                                               "new": "v"}}, "tags": {"site": "b"}})
    assert twin["properties"]["desired"] == {"a": 1, "nested": {"x": 1}, "new": "v", "$version": 3}
    assert twin["tags"] == {"site": "b"}
    push = json.loads(m.received.get(timeout=10).payload)
    assert push == {"nested": {"y": None}, "gone": None, "new": "v", "$version": 3}
