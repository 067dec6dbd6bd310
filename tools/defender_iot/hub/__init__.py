"""The emulated Azure IoT Hub (`defender-iot hub`): device-facing MQTT over
TLS as IoT Hub speaks it, a registry/twin/message store in SQLite and an
HTTP service API. See docs/hub.md."""

from defender_iot.hub.client import HubApiError, HubClient, HubProcess, port_lock, running_hub

__all__ = ["HubApiError", "HubClient", "HubProcess", "port_lock", "running_hub"]
