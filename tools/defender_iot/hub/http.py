"""The service side: an HTTP API whose paths and bodies follow IoT Hub's
service REST API where one exists (identities under /devices, twins under
/twins, direct methods), plus /messages (what devices sent; IoT Hub hands
that to Event Hubs instead) and a read-only web page at /."""

from __future__ import annotations

import asyncio
import html
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

from aiohttp import web

from defender_iot.errors import UserError
from defender_iot.hub.auth import Identity, connection_string
from defender_iot.hub.mqtt import HubCore
from defender_iot.hub.store import MessageFilter, diff_patch

OPENAPI = Path(__file__).with_name("openapi.json")
C2D_MAX_BYTES, C2D_MAX_PENDING = 64 * 1024, 50  # IoT Hub's quotas [QT]
METHOD_MAX_BYTES = 128 * 1024
CORE = web.AppKey("core", HubCore)
HOST = web.AppKey("host", str)


def error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"Message": f"ErrorCode:{code};{message}", "errorCode": code}, status=status)


def _ident(request: web.Request) -> Identity:
    return Identity(request.match_info["device"], request.match_info.get("module", ""))


def identity_json(core: HubCore, host: str, row: Dict[str, Any]) -> Dict[str, Any]:
    ident = Identity(row["device_id"], row["module_id"])
    out: Dict[str, Any] = {"deviceId": ident.device_id}
    if ident.module_id:
        out["moduleId"] = ident.module_id
    conn = core.connections.get(ident.client_id)
    out.update({
        "status": row["status"],
        "connectionState": "Connected" if conn else "Disconnected",
        "authentication": {"type": row["auth_type"],
                           "symmetricKey": {"primaryKey": row["primary_key"], "secondaryKey": row["secondary_key"]},
                           "x509Thumbprint": {"primaryThumbprint": row["primary_thumbprint"],
                                              "secondaryThumbprint": row["secondary_thumbprint"]}},
        "createdTime": row["created"],
        "connectionString": connection_string(host, ident, row["primary_key"]),
    })
    return out


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as e:
        raise web.HTTPBadRequest(text=json.dumps({"Message": f"body is not JSON: {e}", "errorCode": 400001}),
                                 content_type="application/json") from None


async def put_identity(request: web.Request) -> web.Response:
    core, ident = request.app[CORE], _ident(request)
    body = await _json_body(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        return error(400, 400001, "body: expected a JSON object")
    auth = body.get("authentication") or {}
    keys = auth.get("symmetricKey") or {}
    prints = auth.get("x509Thumbprint") or {}
    try:
        row = core.store.add_identity(ident, auth.get("type", "sas"), keys.get("primaryKey"), keys.get("secondaryKey"),
                                      prints.get("primaryThumbprint"), prints.get("secondaryThumbprint"),
                                      body.get("status", "enabled"))
    except UserError as e:
        return error(400, 400001, str(e))
    return web.json_response(identity_json(core, request.app[HOST], row))


async def get_identity(request: web.Request) -> web.Response:
    core = request.app[CORE]
    row = core.store.get_identity(_ident(request))
    if row is None:
        return error(404, 404001, f"{_ident(request)} not found")
    return web.json_response(identity_json(core, request.app[HOST], row))


async def delete_identity(request: web.Request) -> web.Response:
    core, ident = request.app[CORE], _ident(request)
    if not core.store.delete_identity(ident):
        return error(404, 404001, f"{ident} not found")
    conn = core.connections.get(ident.client_id)
    if conn is not None:
        conn.close()
    return web.Response(status=204)


async def list_devices(request: web.Request) -> web.Response:
    core = request.app[CORE]
    rows = [r for r in core.store.list_identities() if not r["module_id"]]
    return web.json_response([identity_json(core, request.app[HOST], r) for r in rows])


async def list_modules(request: web.Request) -> web.Response:
    core = request.app[CORE]
    rows = [r for r in core.store.list_identities(request.match_info["device"]) if r["module_id"]]
    return web.json_response([identity_json(core, request.app[HOST], r) for r in rows])


async def get_twin(request: web.Request) -> web.Response:
    try:
        return web.json_response(request.app[CORE].store.service_twin(_ident(request)))
    except KeyError:
        return error(404, 404001, f"{_ident(request)} not found")


async def patch_twin(request: web.Request) -> web.Response:
    return await _update_twin(request, replace=False)


async def replace_twin(request: web.Request) -> web.Response:
    return await _update_twin(request, replace=True)


async def _update_twin(request: web.Request, replace: bool) -> web.Response:
    """PATCH merges desired properties and tags; PUT replaces them (the
    device gets the merge patch that makes its desired properties equal)."""
    core, ident = request.app[CORE], _ident(request)
    body = await _json_body(request)
    if not isinstance(body, dict):
        return error(400, 400001, "body: expected {\"properties\": {\"desired\": {...}}}")
    desired = (body.get("properties") or {}).get("desired")
    tags = body.get("tags")
    if replace:
        desired, tags = desired or {}, tags or {}
    for name, value in (("properties.desired", desired), ("tags", tags)):
        if value is not None and not isinstance(value, dict):
            return error(400, 400001, f"{name}: expected a JSON object")
    try:
        if replace:
            current = core.store.service_twin(ident)
            tags = diff_patch(current["tags"], tags)
            desired = diff_patch(current["properties"]["desired"], desired)
        if tags:
            core.store.patch_tags(ident, tags)
        if desired:
            core.push_desired(ident, core.store.patch_desired(ident, desired))
        return web.json_response(core.store.service_twin(ident))
    except KeyError:
        return error(404, 404001, f"{ident} not found")
    except ValueError as e:
        return error(400, 400004, str(e))


async def invoke_method(request: web.Request) -> web.Response:
    core, ident = request.app[CORE], _ident(request)
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("methodName"), str):
        return error(400, 400001, "body: expected {\"methodName\": ..., \"payload\": ...}")
    if core.store.get_identity(ident) is None:
        return error(404, 404001, f"{ident} not found")
    if len(json.dumps(body.get("payload"))) > METHOD_MAX_BYTES:
        return error(400, 400027, f"method payload is over the {METHOD_MAX_BYTES} byte limit")
    timeout = float(body.get("responseTimeoutInSeconds", 30))
    connect_timeout = float(body.get("connectTimeoutInSeconds", 0))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + connect_timeout
    while True:
        try:
            status, payload = await core.invoke(ident, body["methodName"], body.get("payload"), timeout)
            return web.json_response({"status": status, "payload": payload})
        except LookupError as e:
            if loop.time() >= deadline:
                return error(404, 404103, str(e))
            await asyncio.sleep(0.2)
        except (asyncio.TimeoutError, TimeoutError):
            return error(504, 504101, f"{ident} did not answer {body['methodName']!r} within {timeout:g} s")
        except ConnectionError as e:
            return error(404, 404103, f"{ident}: {e}")


async def send_c2d(request: web.Request) -> web.Response:
    core, ident = request.app[CORE], _ident(request)
    if core.store.get_identity(ident) is None:
        return error(404, 404001, f"{ident} not found")
    body = await _json_body(request)
    if not isinstance(body, dict) or "body" not in body:
        return error(400, 400001, "body: expected {\"body\": ..., \"properties\": {...}}")
    payload = body["body"]
    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    if len(data) > C2D_MAX_BYTES:
        return error(400, 400027, f"message of {len(data)} bytes is over the {C2D_MAX_BYTES} byte C2D limit")
    if len(core.store.pending_c2d(ident)) >= C2D_MAX_PENDING:
        return error(403, 403004, f"{ident} already has {C2D_MAX_PENDING} undelivered messages")
    props = {str(k): (None if v is None else str(v)) for k, v in (body.get("properties") or {}).items()}
    msg_id = core.store.enqueue_c2d(ident, data, props)
    core.deliver_c2d(ident)
    return web.json_response({"id": msg_id}, status=202)


async def c2d_status(request: web.Request) -> web.Response:
    row = request.app[CORE].store.c2d_status(int(request.match_info["id"]))
    return web.json_response(row) if row else error(404, 404001, "no such message")


def message_filter(query) -> MessageFilter:
    try:
        return MessageFilter(device=query.get("device") or None, module=query.get("module"),
                             type=query.get("type") or None, alert=query.get("alert") or None,
                             since_id=int(query.get("since", 0)), limit=min(int(query.get("limit", 1000)), 10000))
    except ValueError:
        raise web.HTTPBadRequest(text="since and limit must be integers") from None


async def list_messages(request: web.Request) -> web.Response:
    return web.json_response(request.app[CORE].store.messages(message_filter(request.query)))


async def health(request: web.Request) -> web.Response:
    core = request.app[CORE]
    return web.json_response({"status": "ok", "connected": sorted(core.connections),
                              "messages": core.store.message_count()})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI.read_bytes(), content_type="application/json")


# -- the web page -------------------------------------------------------------
def _events(msg: Dict[str, Any]) -> List[Dict[str, Any]]:
    body = msg.get("body")
    events = body.get("Events") if isinstance(body, dict) else None
    return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


def posture(msg: Optional[Dict[str, Any]]) -> str:
    if msg is None:
        return "no Baseline event yet"
    counts: Dict[str, int] = {}
    failing: List[str] = []
    for e in _events(msg):
        if e.get("Name") != "Baseline":
            continue
        for entry in e.get("Payload") or []:
            if isinstance(entry, dict):
                result = str(entry.get("Result", "?"))
                counts[result] = counts.get(result, 0) + 1
                if result == "Fail":
                    failing.append(str(entry.get("Id", "?")))
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"
    return f"{summary}" + (f"; failing: {', '.join(failing)}" if failing else "")


def render_page(core: HubCore) -> str:
    e = html.escape
    rows = []
    for ident_row in core.store.list_identities()[:500]:
        ident = Identity(ident_row["device_id"], ident_row["module_id"])
        flt = MessageFilter(device=ident.device_id, module=ident.module_id, limit=1, newest_first=True)
        beat = core.store.messages(replace(flt, type="Heartbeat"))
        base = core.store.messages(replace(flt, type="Baseline"))
        rows.append(f"<tr><td>{e(ident.device_id)}</td><td>{e(ident.module_id)}</td>"
                    f"<td>{'connected' if ident.client_id in core.connections else 'disconnected'}</td>"
                    f"<td>{e(beat[0]['received']) if beat else '-'}</td>"
                    f"<td>{e(posture(base[0] if base else None))}</td></tr>")
    alerts = []
    for msg in core.store.messages(MessageFilter(type="Alert", limit=50, newest_first=True)):
        for ev in _events(msg):
            if ev.get("EventType") != "Alert":
                continue
            p = (ev.get("Payload") or [{}])[0]
            p = p if isinstance(p, dict) else {}
            who = msg["device"] + (f"/{msg['module']}" if msg["module"] else "")
            alerts.append(f"<tr><td>{e(msg['received'])}</td><td>{e(who)}</td>"
                          f"<td>{e(str(ev.get('Name')))}</td><td>{e(str(p.get('Severity', '')))}</td>"
                          f"<td>{e(str(p.get('State', '')))}</td><td>{e(str(p.get('Description', '')))}</td></tr>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10">
<title>defender-iot emulated hub</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 8px}}</style>
</head><body>
<h1>defender-iot emulated IoT Hub</h1>
<p>{core.store.message_count()} messages received. API: <a href="/openapi.json">/openapi.json</a></p>
<h2>Devices</h2>
<table><tr><th>Device</th><th>Module</th><th>State</th><th>Last heartbeat</th><th>Posture (latest Baseline)</th></tr>
{''.join(rows)}</table>
<h2>Alerts (latest 50 messages)</h2>
<table><tr><th>Received</th><th>Identity</th><th>Alert</th><th>Severity</th><th>State</th><th>Description</th></tr>
{''.join(alerts)}</table>
</body></html>"""


async def page(request: web.Request) -> web.Response:
    return web.Response(text=render_page(request.app[CORE]), content_type="text/html")


def make_app(core: HubCore, host: str) -> web.Application:
    app = web.Application(client_max_size=1 << 20)
    app[CORE] = core
    app[HOST] = host
    r = app.router
    r.add_get("/", page)
    r.add_get("/health", health)
    r.add_get("/openapi.json", openapi)
    r.add_get("/messages", list_messages)
    r.add_get("/devices", list_devices)
    for base in ("/devices/{device}", "/devices/{device}/modules/{module}"):
        r.add_put(base, put_identity)
        r.add_get(base, get_identity)
        r.add_delete(base, delete_identity)
        r.add_post(base + "/messages/deviceBound", send_c2d)
    r.add_get("/devices/{device}/modules", list_modules)
    r.add_get("/messages/deviceBound/{id}", c2d_status)
    for base in ("/twins/{device}", "/twins/{device}/modules/{module}"):
        r.add_get(base, get_twin)
        r.add_patch(base, patch_twin)
        r.add_put(base, replace_twin)
        r.add_post(base + "/methods", invoke_method)
    return app
