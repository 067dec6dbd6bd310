"""The official Azure IoT device SDK for Python (azure-iot-device) as a real
client of the emulated hub, as a device and as a module, with SAS and with
X.509: telemetry with properties, twin GET, reported patch, desired patch,
C2D and a direct method, each checked through the hub's HTTP API.

The SDK only connects to port 8883, so the hub runs there, holding
/tmp/defender-iot-8883.lock (HubProcess takes it) for this module's tests."""

from __future__ import annotations

import json
import queue
import subprocess
import sys

import pytest
from azure.iot.device import IoTHubDeviceClient, IoTHubModuleClient, Message, MethodResponse, X509

from defender_iot.hub import HubProcess

MODULE = "DefenderIotMicroAgent"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubProcess(tmp_path_factory.mktemp("hub-sdk"), mqtt_port=8883) as h:
        yield h


def make_client(hub: HubProcess, device: str, module: str, auth: str):
    ca = hub.ca.read_text()
    cls = IoTHubModuleClient if module else IoTHubDeviceClient
    if auth == "sas":
        return cls.create_from_connection_string(hub.connection_string(device, module or None),
                                                 server_verification_cert=ca)
    args = [sys.executable, "-m", "defender_iot.cli", "hub", "add", device, "--x509", "--data", str(hub.data_dir)]
    if module:
        args += ["--module", module]
    out = subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    assert out.endswith(";x509=true")
    stem = f"{device}+{module}" if module else device
    x509 = X509(str(hub.data_dir / "identities" / f"{stem}.pem"), str(hub.data_dir / "identities" / f"{stem}.key"))
    kw = {"module_id": module} if module else {}
    return cls.create_from_x509_certificate(x509=x509, hostname="localhost", device_id=device,
                                            server_verification_cert=ca, **kw)


@pytest.mark.parametrize("module", ["", MODULE], ids=["device", "module"])
@pytest.mark.parametrize("auth", ["sas", "x509"])
def test_sdk_client_full_round_trip(hub, module, auth):
    device = f"sdk-{auth}-{'m' if module else 'd'}"
    client = make_client(hub, device, module, auth)
    desired: "queue.Queue[dict]" = queue.Queue()
    c2d: "queue.Queue[Message]" = queue.Queue()
    client.on_twin_desired_properties_patch_received = desired.put
    client.on_message_received = c2d.put

    def on_method(request):
        client.send_method_response(MethodResponse.create_from_method_request(
            request, 200, {"method": request.name, "echo": request.payload}))
    client.on_method_request_received = on_method
    client.connect()
    try:
        # telemetry with system and application properties
        msg = Message(json.dumps({"Events": [{"EventType": "Security", "Name": "Heartbeat", "Payload": [{}]}]}))
        msg.content_type, msg.content_encoding = "application/json", "utf-8"
        msg.message_id = "m-1"
        msg.custom_properties["zone"] = "a b&c"
        msg.set_as_security_message()
        client.send_message(msg)
        got = hub.client.messages(device=device, module=module)
        assert len(got) == 1
        assert got[0]["body"]["Events"][0]["Name"] == "Heartbeat"
        assert got[0]["properties"] == {"$.mid": "m-1", "$.ct": "application/json", "$.ce": "utf-8",
                                        "$.ifid": "urn:azureiot:Security:SecurityAgent:1", "zone": "a b&c"}
        assert hub.client.messages(device=device, module=module, type="Heartbeat") == got

        # twin: GET, reported patch, desired patch pushed
        assert client.get_twin() == {"desired": {"$version": 1}, "reported": {"$version": 1}}
        client.patch_twin_reported_properties({"latest_state": "success", "latest_invalid_fields": []})
        twin = hub.client.get_twin(device, module or None)
        assert twin["properties"]["reported"] == {"latest_state": "success", "latest_invalid_fields": [],
                                                  "$version": 2}
        hub.client.set_desired(device, module or None, {"Process_Disabled": True})
        assert desired.get(timeout=10) == {"Process_Disabled": True, "$version": 2}
        assert client.get_twin()["desired"] == {"Process_Disabled": True, "$version": 2}

        # cloud to device (a module receives it as an input message)
        msg_id = hub.client.send_c2d(device, module or None, "scan now", {"prio": "high"})
        received = c2d.get(timeout=10)
        assert received.data == b"scan now"
        assert received.custom_properties["prio"] == "high"
        if module:
            assert received.input_name == "input1"
        else:
            assert received.message_id == str(msg_id)

        # direct method
        result = hub.client.invoke(device, module or None, "collect", {"now": True}, timeout=10)
        assert result == {"status": 200, "payload": {"method": "collect", "echo": {"now": True}}}
        assert hub.client.identity(device, module or None)["connectionState"] == "Connected"
    finally:
        client.shutdown()


def test_sdk_refused_with_wrong_key(hub):
    good = hub.connection_string("sdk-wrongkey")
    bad = good.replace(good.split("SharedAccessKey=")[1], "A" * 43 + "=")
    client = IoTHubDeviceClient.create_from_connection_string(bad, server_verification_cert=hub.ca.read_text(),
                                                              connection_retry=False)
    try:
        with pytest.raises(Exception) as refused:
            client.connect()
        assert "Credential" in type(refused.value).__name__ or "Connection" in type(refused.value).__name__
        assert "sdk-wrongkey" not in hub.client.health()["connected"]
        assert "SAS signature does not match" in hub.log_tail()
    finally:
        client.shutdown()
