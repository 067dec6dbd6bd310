"""What the scenarios run against: a device (anything with `run(cmd) ->
(status, output)`), the hub that receives its messages, and the host-side
services the attacks talk to. A QEMU guest gives all of them; for a board
or an oeqa target, build a Testbed from its own parts."""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from defender_iot.image.target import Target, check, put_file, wait_for

MODULE = "DefenderIotMicroAgent"
CA_PATH = "/etc/defender-iot/hub-ca.pem"
CONNSTR_PATH = "/etc/defender-iot/connection_string.txt"


class Messages:
    """The security messages the hub received from one device, fetched
    incrementally (the hub lists at most 1000 per request)."""

    def __init__(self, client, device: str):
        self.client = client
        self.device = device
        self.seen: List[Dict[str, Any]] = []

    def bodies(self, since: int = 0) -> List[dict]:
        """Bodies of the messages received, from the `since`-th on (see mark())."""
        while True:
            last = self.seen[-1]["id"] if self.seen else 0
            batch = self.client.messages(device=self.device, since=last, limit=1000)
            self.seen += batch
            if len(batch) < 1000:
                return [m["body"] for m in self.seen[since:] if isinstance(m.get("body"), dict)]

    def mark(self) -> int:
        """A position: bodies(since=mark) holds only what arrives after now."""
        self.bodies()
        return len(self.seen)


def events(bodies: List[dict], name: Optional[str] = None) -> List[dict]:
    return [e for b in bodies for e in b.get("Events", []) if name is None or e.get("Name") == name]


def alerts(bodies: List[dict], name: str) -> List[dict]:
    return [e for e in events(bodies, name) if e.get("EventType") == "Alert"]


class _Recorder(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.lines: List[str] = []
        self.connections = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def record(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)


class _PoolHandler(socketserver.StreamRequestHandler):
    """A mining pool's side of Stratum: answers every JSON-RPC call."""

    def handle(self) -> None:
        self.server.connections += 1
        for raw in self.rfile:
            line = raw.decode(errors="replace").strip()
            self.server.record(line)
            try:
                req = json.loads(line)
            except ValueError:
                return
            result: Any = True
            if req.get("method") == "mining.subscribe":
                result = [[["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]], "08000002", 4]
            self.wfile.write((json.dumps({"id": req.get("id"), "result": result, "error": None}) + "\n").encode())


class FakePool(_Recorder):
    def __init__(self):
        super().__init__(_PoolHandler)

    def methods(self) -> List[str]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line).get("method"))
            except ValueError:
                pass
        return out


class ShellListener:
    """The attacker's end of a reverse shell (`nc -l` on the host): accepts
    one connection and lets the test type commands into it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.conn: Optional[socket.socket] = None

    def accept(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            self.conn, _ = self.sock.accept()
        except socket.timeout:
            raise AssertionError(f"no reverse-shell connection reached the listener within {timeout:.0f} s") from None

    def command(self, cmd: str, expect: str, timeout: float = 30) -> str:
        assert self.conn is not None
        self.conn.settimeout(timeout)
        self.conn.sendall(cmd.encode() + b"\n")
        got = b""
        while expect.encode() not in got:
            chunk = self.conn.recv(4096)
            if not chunk:
                break
            got += chunk
        return got.decode(errors="replace")

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.sock.close()


@dataclass
class Testbed:
    arch: str
    target: Target
    hub: Any                          # defender_iot.hub.HubProcess
    device: str
    ssh: Tuple[str, int]              # where the host reaches the device's SSH server
    root_password: str
    pool: FakePool
    pool_address: Tuple[str, int]     # the pool as the device sees it
    listener: ShellListener
    listener_address: Tuple[str, int]
    payload_dir: str = "/opt/defender-iot-tests"
    own_image: bool = True            # the project's test image (its posture as built is known)
    ssh_source: str = "10.0.2.2"      # the host's address as the device sees it (slirp's gateway)
    # restart_hub(seconds, during): stop the hub, call during(), start it
    # again `seconds` after it stopped.
    restart_hub: Optional[Callable[[float, Callable[[], None]], None]] = None
    diagnostics: Optional[Callable[[], Dict[str, str]]] = None
    messages: Messages = field(init=False)

    def __post_init__(self) -> None:
        self.messages = Messages(self.hub.client, self.device)

    def run(self, cmd: str, timeout: float = 60) -> Tuple[int, str]:
        return self.target.run(cmd, timeout=timeout)

    def bodies(self, since: int = 0) -> List[dict]:
        return self.messages.bodies(since)

    def mark(self) -> int:
        return self.messages.mark()

    def wait_event(self, name: str, where: Callable[[dict], bool] = lambda e: True, timeout: float = 120,
                   alert: bool = False, since: int = 0) -> dict:
        """The first event `name` for which `where` holds among the messages
        from `since` (a mark()) on, polling the hub."""
        pick = alerts if alert else events

        def probe():
            evs = pick(self.bodies(since), name)
            hit = next((e for e in evs if where(e)), None)
            return hit is not None, hit if hit is not None else _summary(self.bodies(since))

        kind = "alert" if alert else "event"
        return wait_for(f"a {name} {kind} at the hub from {self.device}", probe, timeout, interval=2)


def _summary(bodies: List[dict]) -> Dict[str, int]:
    """Event names and counts seen so far (what a failure message shows)."""
    counts: Dict[str, int] = {}
    for e in events(bodies):
        key = e.get("Name", "?") + ("(alert)" if e.get("EventType") == "Alert" else "")
        counts[key] = counts.get(key, 0) + 1
    return counts


@contextlib.contextmanager
def qemu_testbed(image, workdir: Path, *, driver=None, hub_data: Optional[Path] = None,
                 http_port: int = 0, on_hub: Optional[Callable[[Any], None]] = None) -> Iterator[Testbed]:
    """Start the hub, the fake pool and the shell listener on loopback, boot
    `image` with the agent configured for the hub (connection string issued
    by the hub, its CA, the address forwarded into the guest), and yield the
    Testbed. `driver` is qemu.Guest (pexpect console) or lab.LabgridGuest."""
    from defender_iot.hub import HubProcess
    from defender_iot.image.builder import CONFIG_PATH
    from defender_iot.image.qemu import HUB_ADDRESS, POOL_ADDRESS, SHELL_LISTENER_ADDRESS, Guest

    driver = driver or Guest
    device = f"dfi-{image.arch}"
    pool, listener = FakePool(), ShellListener()
    hub = HubProcess(hub_data or workdir / "hub", http_port=http_port)
    config = {"Agent_Transport": "iothub", "IothubModule_ConnectionStringFile": CONNSTR_PATH,
              "IothubModule_CaFile": CA_PATH, "IothubModule_ConnectAddress": f"{HUB_ADDRESS[0]}:{HUB_ADDRESS[1]}"}
    with contextlib.ExitStack() as stack:
        stack.callback(pool.shutdown)
        stack.callback(listener.close)
        stack.enter_context(hub)
        if on_hub is not None:
            on_hub(hub)
        guest = driver(image, workdir / "guest", config=config,
                       guestfwd={HUB_ADDRESS: hub.mqtt_port, POOL_ADDRESS: pool.port,
                                 SHELL_LISTENER_ADDRESS: listener.port},
                       files={CONNSTR_PATH: (hub.connection_string(device, MODULE) + "\n").encode(),
                              CA_PATH: hub.ca.read_bytes()})

        def restart_hub(seconds: float, during: Callable[[], None]) -> None:
            hub.stop()
            stopped = time.monotonic()
            try:
                during()
                time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
            finally:
                hub.start()

        def diagnostics() -> Dict[str, str]:
            out = {"console (last 8 KiB)": guest.console_text()[-8192:], "hub log": hub.log_tail(60)}
            if guest.alive():
                try:
                    out["agent log in the guest"] = guest.run("tail -n 60 /var/log/defender-iot/agent.log",
                                                              timeout=20)[1]
                except AssertionError as e:
                    out["agent log in the guest"] = str(e)
            return out

        stack.enter_context(guest)
        payload_dir = image.payload_dir
        if image.initrd is None:
            # A disk image cannot take the overlay: configure it over the console.
            cfg = json.dumps({**image.config, **config}).encode()
            for path, data in {**guest.files, CONFIG_PATH: cfg}.items():
                put_file(guest, path, data, "0600")
            check(guest, image.agent_restart, timeout=60)
        if guest.run(f"test -x {payload_dir}/xmrig")[0] != 0:
            payload_dir = push_payloads(guest, image.arch, workdir / "payloads")
        yield Testbed(arch=image.arch, target=guest, hub=hub, device=device, ssh=("127.0.0.1", guest.ssh_port),
                      root_password=image.root_password, pool=pool, pool_address=POOL_ADDRESS,
                      listener=listener, listener_address=SHELL_LISTENER_ADDRESS,
                      restart_hub=restart_hub, diagnostics=diagnostics, payload_dir=payload_dir,
                      own_image=bool(image.digest))


def push_payloads(target: Target, arch: str, build_dir: Path, dest: str = "/tmp/dfi-payloads") -> str:
    """Put the attack stand-ins on a device whose image lacks them (a user's
    own image): compiled here for its architecture, sent through run()."""
    from defender_iot.image.arches import image_arch
    from defender_iot.image.builder import compile_payloads
    check(target, f"mkdir -p {dest}")
    for name, path in compile_payloads(image_arch(arch), build_dir).items():
        put_file(target, f"{dest}/{name}", path.read_bytes(), "0755")
    return dest
