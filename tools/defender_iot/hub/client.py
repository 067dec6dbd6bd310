"""Library API for tests and scripts: run a hub as a subprocess and talk to
its HTTP service API.

    with HubProcess(tmp_path / "hub", mqtt_port=8883) as hub:
        cs = hub.client.add_identity("dev1", "DefenderIotMicroAgent")["connectionString"]
        ...
        hub.client.set_desired("dev1", "DefenderIotMicroAgent", {"Process_Disabled": True})
        msgs = hub.client.wait_for_messages(lambda m: len(m) >= 3, device="dev1")
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from defender_iot.errors import UserError
from defender_iot.hub.server import read_state, state_file

SDK_PORT = 8883


@contextlib.contextmanager
def port_lock(port: int = SDK_PORT, timeout: float = 900) -> Iterator[None]:
    """Hold /tmp/defender-iot-{port}.lock: only one hub may listen on 8883 on
    this machine (the device SDK cannot use another port), so every test that
    runs a hub there takes this lock for its whole duration. Not re-entrant:
    HubProcess(mqtt_port=8883) takes it itself."""
    path = f"/tmp/defender-iot-{port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} still held after {timeout:g} s") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


class HubApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class HubClient:
    """The hub's HTTP API, synchronously (stdlib only)."""

    base_url: str
    timeout: float = 30

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> "HubClient":
        """The running hub that serves `data_dir` (from DIR/hub.json)."""
        info = running_hub(data_dir)
        if info is None:
            raise UserError(f"no hub is running on {data_dir} (start one with `defender-iot hub serve --data {data_dir}`)")
        host = info["bind"] if info["bind"] not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return cls(f"http://{host}:{info['http_port']}")

    def request(self, method: str, path: str, body: Any = None, timeout: Optional[float] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise HubApiError(e.code, e.read().decode("utf-8", "replace")) from None
        return json.loads(raw) if raw else None

    @staticmethod
    def _path(kind: str, device: str, module: Optional[str]) -> str:
        q = urllib.parse.quote
        return f"/{kind}/{q(device, safe='')}" + (f"/modules/{q(module, safe='')}" if module else "")

    def add_identity(self, device: str, module: Optional[str] = None, auth: str = "sas",
                     primary_thumbprint: Optional[str] = None) -> Dict[str, Any]:
        body: Dict[str, Any] = {"authentication": {"type": auth}}
        if primary_thumbprint:
            body["authentication"]["x509Thumbprint"] = {"primaryThumbprint": primary_thumbprint}
        return self.request("PUT", self._path("devices", device, module), body)

    def identity(self, device: str, module: Optional[str] = None) -> Dict[str, Any]:
        return self.request("GET", self._path("devices", device, module))

    def get_twin(self, device: str, module: Optional[str] = None) -> Dict[str, Any]:
        return self.request("GET", self._path("twins", device, module))

    def set_desired(self, device: str, module: Optional[str], desired: Dict[str, Any]) -> Dict[str, Any]:
        return self.request("PATCH", self._path("twins", device, module), {"properties": {"desired": desired}})

    def invoke(self, device: str, module: Optional[str], method: str, payload: Any = None,
               timeout: float = 30, connect_timeout: float = 0) -> Dict[str, Any]:
        return self.request("POST", self._path("twins", device, module) + "/methods",
                            {"methodName": method, "payload": payload, "responseTimeoutInSeconds": timeout,
                             "connectTimeoutInSeconds": connect_timeout}, timeout=timeout + connect_timeout + 10)

    def send_c2d(self, device: str, module: Optional[str], body: Any,
                 properties: Optional[Dict[str, Optional[str]]] = None) -> int:
        return self.request("POST", self._path("devices", device, module) + "/messages/deviceBound",
                            {"body": body, "properties": properties or {}})["id"]

    def messages(self, device: Optional[str] = None, module: Optional[str] = None, type: Optional[str] = None,
                 alert: Optional[str] = None, since: int = 0, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Received messages, oldest first; all of them unless `limit` (the
        server returns at most 10,000 per request: this pages)."""
        out: List[Dict[str, Any]] = []
        while True:
            page = 10000 if limit is None else min(10000, limit - len(out))
            query = {k: v for k, v in dict(device=device, module=module, type=type, alert=alert,
                                            since=since, limit=page).items() if v is not None}
            got = self.request("GET", "/messages?" + urllib.parse.urlencode(query))
            out.extend(got)
            if len(got) < page or (limit is not None and len(out) >= limit):
                return out
            since = got[-1]["id"]

    def wait_for_messages(self, done: Callable[[List[Dict[str, Any]]], bool], timeout: float = 60,
                          **filters: Any) -> List[Dict[str, Any]]:
        """Poll /messages until done(messages) holds; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages(**filters)
            if done(msgs):
                return msgs
            if time.monotonic() > deadline:
                raise AssertionError(f"hub messages {filters} never met the condition in {timeout:g} s; "
                                     f"got {len(msgs)}: {json.dumps(msgs)[:2000]}")
            time.sleep(0.2)

    def health(self) -> Dict[str, Any]:
        return self.request("GET", "/health", timeout=5)


def running_hub(data_dir: Path) -> Optional[Dict[str, Any]]:
    """DIR/hub.json if the hub process it names is alive."""
    return read_state(Path(data_dir))


@dataclass
class HubProcess:
    """`defender-iot hub serve` as a subprocess, ready on __enter__.

    mqtt_port/http_port 0 pick free ports (read back from the attributes).
    mqtt_port=8883 (what the device SDK needs) takes port_lock(8883) for the
    lifetime of the object. stop() and start() restart it on the same data
    directory and ports."""

    data_dir: Path
    mqtt_port: int = 0
    http_port: int = 0
    bind: str = "127.0.0.1"
    ready_timeout: float = 30
    lock: Optional[bool] = None  # default: lock when mqtt_port == 8883
    proc: Optional[subprocess.Popen] = field(default=None, init=False)
    _stack: Optional[contextlib.ExitStack] = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)

    @property
    def ca(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "hub.log"

    @property
    def client(self) -> HubClient:
        return HubClient(f"http://{self.bind}:{self.http_port}")

    def connection_string(self, device: str, module: Optional[str] = None) -> str:
        return self.client.add_identity(device, module)["connectionString"]

    def __enter__(self) -> "HubProcess":
        self._stack = contextlib.ExitStack()
        if self.lock or (self.lock is None and self.mqtt_port == SDK_PORT):
            self._stack.enter_context(port_lock(self.mqtt_port))
        try:
            self.start()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stop()
        finally:
            if self._stack is not None:
                self._stack.close()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state_file(self.data_dir).unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "defender_iot.hub", "serve", "--data", str(self.data_dir),
               "--mqtt-port", str(self.mqtt_port), "--http-port", str(self.http_port), "--bind", self.bind]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log_tail()}")
            info = running_hub(self.data_dir)
            if info and info.get("pid") == self.proc.pid:
                self.mqtt_port, self.http_port = info["mqtt_port"], info["http_port"]
                try:
                    self.client.health()
                    return
                except (OSError, HubApiError):
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"hub not ready after {self.ready_timeout:g} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
