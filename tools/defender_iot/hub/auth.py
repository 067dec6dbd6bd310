"""IoT Hub credentials: connection strings, the MQTT username, SAS tokens.

The SAS format is IoT Hub's (see the reference digest, section 4):
`SharedAccessSignature sr={url-encoded resource}&sig={url-encoded base64
HMAC-SHA256(base64-decoded key, sr + "\\n" + se)}&se={expiry}`, with the
resource `{host}/devices/{d}` or `{host}/devices/{d}/modules/{m}`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Dict, Optional

from defender_iot.errors import UserError


@dataclass(frozen=True)
class Identity:
    device_id: str
    module_id: str = ""  # "" for a device identity

    @property
    def client_id(self) -> str:
        return f"{self.device_id}/{self.module_id}" if self.module_id else self.device_id

    @property
    def topic_base(self) -> str:
        return f"devices/{self.device_id}/modules/{self.module_id}" if self.module_id else f"devices/{self.device_id}"

    def __str__(self) -> str:
        return self.client_id


def new_key() -> str:
    """A 32-byte symmetric key, base64, as IoT Hub generates them."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def check_id(value: str, what: str) -> str:
    """IoT Hub ids: up to 128 chars of letters, digits and -.%_*?!(),:=@$'."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.%_*?!(),:=@$'")
    if not value or len(value) > 128 or not set(value) <= allowed:
        raise UserError(f"{what} {value!r}: expected 1-128 characters of letters, digits and -.%_*?!(),:=@$'")
    return value


def connection_string(host: str, ident: Identity, key: Optional[str] = None) -> str:
    parts = [f"HostName={host}", f"DeviceId={ident.device_id}"]
    if ident.module_id:
        parts.append(f"ModuleId={ident.module_id}")
    parts.append(f"SharedAccessKey={key}" if key else "x509=true")
    return ";".join(parts)


def resource_uri(host: str, ident: Identity) -> str:
    return f"{host}/{ident.topic_base}"


def sign(key: str, encoded_resource: str, expiry: int) -> str:
    try:
        raw_key = base64.b64decode(key, validate=True)
    except ValueError:
        raise UserError("SharedAccessKey: not base64") from None
    digest = hmac.new(raw_key, f"{encoded_resource}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sas_token(host: str, ident: Identity, key: str, ttl: int = 3600, now: Optional[float] = None) -> str:
    """What a device SDK sends as the MQTT password."""
    expiry = int((time.time() if now is None else now) + ttl)
    sr = urllib.parse.quote(resource_uri(host, ident), safe="")
    sig = urllib.parse.quote(sign(key, sr, expiry), safe="")
    return f"SharedAccessSignature sr={sr}&sig={sig}&se={expiry}"


class AuthError(Exception):
    """Why a CONNECT is refused (logged by the hub, never sent to the client,
    as IoT Hub sends only the CONNACK code: 2 bad client id, 4 bad username,
    5 not authorized)."""

    def __init__(self, message: str, connack_code: int = 5) -> None:
        super().__init__(message)
        self.connack_code = connack_code


def parse_username(username: str, client_id: str, host_names) -> Identity:
    """`{host}/{d}[/{m}]/?api-version=...`; the ids must match the client id."""
    path, sep, query = username.partition("/?")
    if not sep or "api-version=" not in query:
        raise AuthError(f"username {username!r}: expected {{host}}/{{device}}[/{{module}}]/?api-version=...", 4)
    host, _, ids = path.partition("/")
    if host.lower() not in host_names:
        raise AuthError(f"username host {host!r} is not this hub ({', '.join(sorted(host_names))})", 4)
    if ids != client_id:
        raise AuthError(f"username identity {ids!r} does not match client id {client_id!r}", 2)
    device, _, module = client_id.partition("/")
    if not device or "/" in module:
        raise AuthError(f"client id {client_id!r}: expected {{device}} or {{device}}/{{module}}", 2)
    return Identity(device, module)


def verify_sas(token: str, host: str, ident: Identity, keys, now: Optional[float] = None) -> int:
    """The token's expiry (Unix time); AuthError unless `token` is a valid,
    unexpired SAS for `ident` signed with one of `keys`."""
    prefix = "SharedAccessSignature "
    if not token.startswith(prefix):
        raise AuthError("password is not a SharedAccessSignature")
    fields: Dict[str, str] = {}
    for part in token[len(prefix):].split("&"):
        name, _, value = part.partition("=")
        fields[name] = value
    sr, sig, se = fields.get("sr"), fields.get("sig"), fields.get("se")
    if not sr or not sig or not se:
        raise AuthError("SAS token lacks sr, sig or se")
    if "skn" in fields:
        raise AuthError("shared access policy tokens (skn=) are not accepted for device connections by this hub")
    if urllib.parse.unquote(sr).lower() != resource_uri(host, ident).lower():
        raise AuthError(f"SAS resource {urllib.parse.unquote(sr)!r} is not {resource_uri(host, ident)!r}")
    try:
        expiry = int(se)
    except ValueError:
        raise AuthError(f"SAS expiry {se!r} is not an integer") from None
    if expiry <= (time.time() if now is None else now):
        raise AuthError(f"SAS token expired at {expiry}")
    given = urllib.parse.unquote(sig)
    for key in keys:
        if key and hmac.compare_digest(sign(key, sr, expiry), given):
            return expiry
    raise AuthError("SAS signature does not match the identity's keys")
