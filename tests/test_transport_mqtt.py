"""The mqtt transport against a real broker (mosquitto, TLS with a CA made
for the test), and the local transport's UNIX socket."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from transport_support import FAST, AgentProcess, transport_options, wait_until, write_secret

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None or shutil.which("mosquitto_sub") is None,
                                reason="mosquitto is not installed (scripts/apt/transport.txt)")


@pytest.fixture(scope="module")
def agent(agent_factory):
    return agent_factory(transport_options())


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(d: Path, name: str = "ca") -> Path:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{name}.key"),
            "-out", str(d / f"{name}.pem"), "-days", "1", "-subj", f"/CN=test {name}")
    return d / f"{name}.pem"


def issue(d: Path, name: str, cn: str, san: str) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
            "-subj", f"/CN={cn}")
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-out", str(d / f"{name}.pem"), "-days", "1", "-extfile", str(d / f"{name}.ext"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, d: Path, san: str = "DNS:localhost,IP:127.0.0.1", password: str | None = None):
        self.dir = d
        self.ca = make_ca(d)
        issue(d, "server", "localhost", san)
        self.port = free_port()
        conf = [f"listener {self.port} 127.0.0.1", f"cafile {d / 'ca.pem'}", f"certfile {d / 'server.pem'}",
                f"keyfile {d / 'server.key'}", "persistence false", "user root"]
        if password:
            subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "agent", password], check=True)
            conf += ["allow_anonymous false", f"password_file {d / 'passwd'}"]
        else:
            conf += ["allow_anonymous true"]
        (d / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        self.password = password
        self.start()

    def start(self) -> None:
        log = self.dir / "broker.log"
        with open(log, "w") as f:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.dir / "mosquitto.conf")],
                                         stdout=subprocess.DEVNULL, stderr=f)
        wait_until(lambda: "running" in log.read_text(), 10, "mosquitto to start")

    def subscribe(self, topic: str, count: int) -> subprocess.Popen:
        cmd = ["mosquitto_sub", "-h", "localhost", "-p", str(self.port), "--cafile", str(self.ca), "-q", "1",
               "-t", topic, "-C", str(count), "-W", "40", "-F", "%t %p"]
        if self.password:
            cmd += ["-u", "agent", "-P", self.password]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # subscribed before the agent publishes
        return proc

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def broker_factory(tmp_path):
    made = []

    def make(**kw) -> Broker:
        d = tmp_path / f"broker{len(made)}"
        d.mkdir()
        made.append(Broker(d, **kw))
        return made[-1]

    yield make
    for b in made:
        b.stop()


def mqtt_config(broker: Broker, tmp_path: Path, **extra):
    cfg = {"Agent_Transport": "mqtt", "Mqtt_Host": "localhost", "Mqtt_Port": broker.port,
           "Mqtt_CaFile": str(broker.ca), "Mqtt_Topic": "site/{client}/security", "Mqtt_ClientId": "gw-7",
           "CollectorsCore_PriorityIntervals": FAST, "Agent_StateDirectory": str(tmp_path / "state")}
    cfg.update(extra)
    return cfg


def received(sub: subprocess.Popen) -> list:
    out, err = sub.communicate(timeout=60)
    return [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1])) for line in out.splitlines() if line]


def test_messages_reach_the_broker_over_tls(agent, broker_factory, tmp_path):
    broker = broker_factory()
    sub = broker.subscribe("site/#", 2)
    with AgentProcess(agent, tmp_path, mqtt_config(broker, tmp_path)) as ap:
        got = received(sub)
        assert "connected to localhost" in ap.log_text()
    assert len(got) == 2
    for topic, body in got:
        assert topic == "site/gw-7/security"
        assert body["Events"][0]["Name"] == "Heartbeat" and body["MessageId"]


def test_server_name_is_verified(agent, broker_factory, tmp_path):
    broker = broker_factory(san="DNS:some-other-host")
    with AgentProcess(agent, tmp_path, mqtt_config(broker, tmp_path)) as ap:
        ap.wait_log("is not trusted for 'localhost'", 20)
        assert "connected to" not in ap.log_text()


def test_password_from_a_private_file(agent, broker_factory, tmp_path):
    broker = broker_factory(password="s3cret pass")
    creds = write_secret(tmp_path / "creds", "agent\ns3cret pass\n", 0o644)
    cfg = mqtt_config(broker, tmp_path, Mqtt_CredentialsFile=str(creds))
    with AgentProcess(agent, tmp_path, cfg) as ap:
        ap.wait_log(f"chmod 600 {creds}", 20)
        assert ap.proc.wait(10) == 1  # refused at start, before any connection
    os.chmod(creds, 0o600)
    sub = broker.subscribe("site/#", 1)
    with AgentProcess(agent, tmp_path, cfg):
        assert len(received(sub)) == 1
    write_secret(creds, "agent\nwrong\n")
    with AgentProcess(agent, tmp_path, cfg) as ap:
        ap.wait_log("refused the connection", 20)


def test_messages_queued_while_the_broker_is_down_are_delivered(agent, broker_factory, tmp_path):
    broker = broker_factory()
    broker.stop()
    with AgentProcess(agent, tmp_path, mqtt_config(broker, tmp_path)) as ap:
        ap.wait_log("cannot reach localhost", 20)
        time.sleep(7)  # at least two messages wait
        broker.start()
        sub = broker.subscribe("site/#", 3)
        got = received(sub)
    times = sorted(body["Events"][0]["TimestampUTC"] for _, body in got)
    assert len(got) == 3 and times[0] < times[-1]


def test_local_unix_datagram_socket(agent, tmp_path):
    path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        s.settimeout(20)
        cfg = {"Agent_Transport": "local", "Local_Socket": str(path), "CollectorsCore_PriorityIntervals": FAST}
        with AgentProcess(agent, tmp_path, cfg):
            first = json.loads(s.recv(1 << 20))
            second = json.loads(s.recv(1 << 20))
    assert first["Events"][0]["Name"] == "Heartbeat" and second["MessageId"] != first["MessageId"]


def test_local_unix_stream_socket(agent, tmp_path):
    path = tmp_path / "agent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(str(path))
        srv.listen(1)
        srv.settimeout(20)
        cfg = {"Agent_Transport": "local", "Local_Socket": str(path), "CollectorsCore_PriorityIntervals": FAST}
        with AgentProcess(agent, tmp_path, cfg):
            conn, _ = srv.accept()
            with conn, conn.makefile() as f:
                lines = [json.loads(f.readline()) for _ in range(2)]
    assert all(m["Events"][0]["Name"] == "Heartbeat" for m in lines)


def test_ca_from_a_hashed_directory(agent, broker_factory, tmp_path):
    broker = broker_factory()
    cadir = tmp_path / "cadir"
    cadir.mkdir()
    shutil.copy(broker.ca, cadir / "test-ca.pem")
    openssl("rehash", str(cadir))
    sub = broker.subscribe("site/#", 1)
    with AgentProcess(agent, tmp_path, mqtt_config(broker, tmp_path, Mqtt_CaFile=str(cadir))):
        assert len(received(sub)) == 1
