"""The hub's state in SQLite (DIR/hub.db): identities, twins, received
messages and queued cloud-to-device messages. WAL mode lets the CLI read
and register identities while `hub serve` runs; a restart loses nothing."""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from defender_iot.errors import UserError
from defender_iot.hub.auth import Identity, check_id, new_key

TWIN_SECTION_LIMIT = 32 * 1024  # desired and reported, each [QT]
AUTH_TYPES = ("sas", "selfSigned", "certificateAuthority")

SCHEMA = """
CREATE TABLE IF NOT EXISTS identities (
  device_id TEXT NOT NULL, module_id TEXT NOT NULL DEFAULT '',
  auth_type TEXT NOT NULL, primary_key TEXT, secondary_key TEXT,
  primary_thumbprint TEXT, secondary_thumbprint TEXT,
  status TEXT NOT NULL DEFAULT 'enabled', created TEXT NOT NULL,
  PRIMARY KEY (device_id, module_id));
CREATE TABLE IF NOT EXISTS twins (
  device_id TEXT NOT NULL, module_id TEXT NOT NULL DEFAULT '',
  desired TEXT NOT NULL DEFAULT '{}', desired_version INTEGER NOT NULL DEFAULT 1,
  reported TEXT NOT NULL DEFAULT '{}', reported_version INTEGER NOT NULL DEFAULT 1,
  tags TEXT NOT NULL DEFAULT '{}', version INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY (device_id, module_id));
CREATE TABLE IF NOT EXISTS messages (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, module_id TEXT NOT NULL,
  received TEXT NOT NULL, properties TEXT NOT NULL, body BLOB NOT NULL,
  types TEXT NOT NULL DEFAULT ',', alerts TEXT NOT NULL DEFAULT ',');
CREATE INDEX IF NOT EXISTS messages_by_identity ON messages (device_id, module_id, id);
CREATE TABLE IF NOT EXISTS c2d (
  id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, module_id TEXT NOT NULL,
  properties TEXT NOT NULL, body BLOB NOT NULL, created TEXT NOT NULL, delivered TEXT);
"""


def utcnow() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def merge_patch(target: Dict[str, Any], patch: Dict[str, Any]) -> Dict[str, Any]:
    """JSON merge patch as twins apply it: null deletes a key, objects merge."""
    out = dict(target)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out


def diff_patch(old: Dict[str, Any], new: Dict[str, Any]) -> Dict[str, Any]:
    """The merge patch that turns `old` into `new` (for a twin replace: the
    device is sent this patch)."""
    patch: Dict[str, Any] = {k: None for k in old if not k.startswith("$") and k not in new}
    for key, value in new.items():
        if key.startswith("$"):
            continue
        if isinstance(value, dict) and isinstance(old.get(key), dict):
            sub = diff_patch(old[key], value)
            if sub:
                patch[key] = sub
        elif key not in old or old[key] != value:
            patch[key] = value
    return patch


def event_index(body: Any) -> Tuple[str, str]:
    """(types, alerts) columns: ",Name,EventType,..." for filtering by
    event name/type and by alert name (docs/events.md message format)."""
    types, alerts = set(), set()
    events = body.get("Events") if isinstance(body, dict) else None
    if isinstance(events, list):
        for e in events:
            if not isinstance(e, dict):
                continue
            name, kind = e.get("Name"), e.get("EventType")
            for v in (name, kind):
                if isinstance(v, str):
                    types.add(v)
            if kind == "Alert" and isinstance(name, str):
                alerts.add(name)
    return "," + "".join(f"{t}," for t in sorted(types)), "," + "".join(f"{a}," for a in sorted(alerts))


def decode_body(body: bytes) -> Dict[str, Any]:
    """The body as a consumer wants it: parsed JSON, else text, else base64."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode()}
    try:
        return {"body": json.loads(text)}
    except ValueError:
        return {"body": text}


@dataclass
class MessageFilter:
    device: Optional[str] = None
    module: Optional[str] = None
    type: Optional[str] = None
    alert: Optional[str] = None
    since_id: int = 0
    limit: int = 1000
    newest_first: bool = False


@dataclass
class Store:
    path: Path
    db: sqlite3.Connection = field(init=False, repr=False)
    _pending: List[tuple] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise UserError(f"{self.path}: not a usable hub database ({e}); move it away to start afresh") from None

    @classmethod
    def open(cls, data_dir: Path) -> "Store":
        return cls(Path(data_dir) / "hub.db")

    def close(self) -> None:
        self.commit()
        self.db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """A write transaction; a pending message batch is committed first
        (committing early only makes its PUBACKs safe sooner)."""
        self.commit()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- identities --------------------------------------------------------
    def add_identity(self, ident: Identity, auth_type: str = "sas", primary_key: Optional[str] = None,
                     secondary_key: Optional[str] = None, primary_thumbprint: Optional[str] = None,
                     secondary_thumbprint: Optional[str] = None, status: str = "enabled") -> Dict[str, Any]:
        """Create or replace an identity (IoT Hub's PUT). A module's device
        is created with a SAS key when missing."""
        check_id(ident.device_id, "device id")
        if ident.module_id:
            check_id(ident.module_id, "module id")
            if self.get_identity(Identity(ident.device_id)) is None:
                self.add_identity(Identity(ident.device_id))
        if auth_type not in AUTH_TYPES:
            raise UserError(f"authentication type {auth_type!r}: expected one of {', '.join(AUTH_TYPES)}")
        if status not in ("enabled", "disabled"):
            raise UserError(f"status {status!r}: expected enabled or disabled")
        existing = self.get_identity(ident)
        if existing and existing["auth_type"] == auth_type:
            # An update that names no credentials keeps the current ones, so
            # registering twice hands out the same connection string.
            primary_key, secondary_key = primary_key or existing["primary_key"], secondary_key or existing["secondary_key"]
            primary_thumbprint = primary_thumbprint or existing["primary_thumbprint"]
            secondary_thumbprint = secondary_thumbprint or existing["secondary_thumbprint"]
        if auth_type == "sas":
            primary_key, secondary_key = primary_key or new_key(), secondary_key or new_key()
            primary_thumbprint = secondary_thumbprint = None
        elif auth_type == "selfSigned":
            if not primary_thumbprint:
                raise UserError(f"{ident}: a selfSigned identity needs a primary thumbprint")
            primary_key = secondary_key = None
        else:
            primary_key = secondary_key = primary_thumbprint = secondary_thumbprint = None
        norm = [t.replace(":", "").upper() if t else None for t in (primary_thumbprint, secondary_thumbprint)]
        with self._tx():
            self.db.execute(
                "INSERT INTO identities VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(device_id, module_id) DO UPDATE SET "
                "auth_type=excluded.auth_type, primary_key=excluded.primary_key, secondary_key=excluded.secondary_key, "
                "primary_thumbprint=excluded.primary_thumbprint, secondary_thumbprint=excluded.secondary_thumbprint, "
                "status=excluded.status",
                (ident.device_id, ident.module_id, auth_type, primary_key, secondary_key, norm[0], norm[1],
                 status, utcnow()))
            self.db.execute("INSERT OR IGNORE INTO twins (device_id, module_id) VALUES (?,?)",
                            (ident.device_id, ident.module_id))
        got = self.get_identity(ident)
        assert got is not None
        return got

    def get_identity(self, ident: Identity) -> Optional[Dict[str, Any]]:
        row = self.db.execute("SELECT * FROM identities WHERE device_id=? AND module_id=?",
                              (ident.device_id, ident.module_id)).fetchone()
        return dict(row) if row else None

    def list_identities(self, device_id: Optional[str] = None) -> List[Dict[str, Any]]:
        if device_id is None:
            rows = self.db.execute("SELECT * FROM identities ORDER BY device_id, module_id")
        else:
            rows = self.db.execute("SELECT * FROM identities WHERE device_id=? ORDER BY module_id", (device_id,))
        return [dict(r) for r in rows]

    def delete_identity(self, ident: Identity) -> bool:
        with self._tx():
            where = "device_id=?" if not ident.module_id else "device_id=? AND module_id=?"
            args: Tuple[str, ...] = (ident.device_id,) if not ident.module_id else (ident.device_id, ident.module_id)
            n = self.db.execute(f"DELETE FROM identities WHERE {where}", args).rowcount
            self.db.execute(f"DELETE FROM twins WHERE {where}", args)
        return n > 0

    # -- twins -------------------------------------------------------------
    def _twin_row(self, ident: Identity) -> sqlite3.Row:
        row = self.db.execute("SELECT * FROM twins WHERE device_id=? AND module_id=?",
                              (ident.device_id, ident.module_id)).fetchone()
        if row is None:
            raise KeyError(str(ident))
        return row

    def device_twin(self, ident: Identity) -> Dict[str, Any]:
        """What a device gets for `$iothub/twin/GET`."""
        row = self._twin_row(ident)
        return {"desired": {**json.loads(row["desired"]), "$version": row["desired_version"]},
                "reported": {**json.loads(row["reported"]), "$version": row["reported_version"]}}

    def service_twin(self, ident: Identity) -> Dict[str, Any]:
        """The twin as the service API returns it (GET /twins/{id})."""
        row = self._twin_row(ident)
        identity = self.get_identity(ident) or {}
        twin: Dict[str, Any] = {"deviceId": ident.device_id}
        if ident.module_id:
            twin["moduleId"] = ident.module_id
        twin.update({"etag": f"AAAAAAAAAA{row['version']}=", "version": row["version"],
                     "status": identity.get("status", "enabled"),
                     "authenticationType": identity.get("auth_type", "sas"),
                     "tags": json.loads(row["tags"]), "properties": self.device_twin(ident)})
        return twin

    def patch_desired(self, ident: Identity, patch: Dict[str, Any]) -> Dict[str, Any]:
        """Merge `patch` into desired; returns the patch as pushed to the
        device, with the new `$version`."""
        return self._patch(ident, "desired", patch)

    def patch_reported(self, ident: Identity, patch: Dict[str, Any]) -> int:
        return self._patch(ident, "reported", patch)["$version"]

    def patch_tags(self, ident: Identity, patch: Dict[str, Any]) -> None:
        with self._tx():
            row = self._twin_row(ident)
            tags = merge_patch(json.loads(row["tags"]), patch)
            self.db.execute("UPDATE twins SET tags=?, version=version+1 WHERE device_id=? AND module_id=?",
                            (json.dumps(tags), ident.device_id, ident.module_id))

    def _patch(self, ident: Identity, section: str, patch: Dict[str, Any]) -> Dict[str, Any]:
        if not isinstance(patch, dict):
            raise ValueError(f"{section} patch: expected a JSON object")
        with self._tx():
            row = self._twin_row(ident)
            merged = json.dumps(merge_patch(json.loads(row[section]), patch))
            if len(merged) > TWIN_SECTION_LIMIT:
                raise ValueError(f"{section} properties would be {len(merged)} bytes, over the {TWIN_SECTION_LIMIT} limit")
            version = row[f"{section}_version"] + 1
            self.db.execute(f"UPDATE twins SET {section}=?, {section}_version=?, version=version+1 "
                            "WHERE device_id=? AND module_id=?", (merged, version, ident.device_id, ident.module_id))
        return {**{k: v for k, v in patch.items() if not k.startswith("$")}, "$version": version}

    # -- device-to-cloud messages -----------------------------------------
    def add_message(self, ident: Identity, properties_json: str, body: bytes,
                    received: Optional[str] = None) -> None:
        """Queue a message (its property bag already as a JSON object) for
        the next commit(): the MQTT server commits in batches and sends
        PUBACKs only after the commit."""
        decoded = decode_body(body)
        types, alerts = event_index(decoded.get("body"))
        self._pending.append((ident.device_id, ident.module_id, received or utcnow(), properties_json,
                              body, types, alerts))

    def commit(self) -> None:
        if self._pending:
            rows, self._pending = self._pending, []
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany("INSERT INTO messages (device_id, module_id, received, properties, body, types, "
                                    "alerts) VALUES (?,?,?,?,?,?,?)", rows)

    def messages(self, f: MessageFilter) -> List[Dict[str, Any]]:
        where, args = ["id > ?"], [f.since_id]  # type: ignore[list-item]
        if f.device:
            where.append("device_id = ?")
            args.append(f.device)
        if f.module is not None:
            where.append("module_id = ?")
            args.append(f.module)
        if f.type:
            where.append("types LIKE ?")
            args.append(f"%,{f.type},%")
        if f.alert:
            where.append("alerts LIKE ?")
            args.append(f"%,{f.alert},%")
        order = "DESC" if f.newest_first else "ASC"
        rows = self.db.execute(f"SELECT * FROM messages WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?",
                               (*args, f.limit))
        return [message_record(r) for r in rows]

    def message_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])

    # -- cloud-to-device messages -----------------------------------------
    def enqueue_c2d(self, ident: Identity, body: bytes, properties: Dict[str, Optional[str]]) -> int:
        with self._tx():
            cur = self.db.execute("INSERT INTO c2d (device_id, module_id, properties, body, created) VALUES (?,?,?,?,?)",
                                  (ident.device_id, ident.module_id, json.dumps(properties), body, utcnow()))
        return int(cur.lastrowid or 0)

    def pending_c2d(self, ident: Identity) -> List[Dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM c2d WHERE device_id=? AND module_id=? AND delivered IS NULL ORDER BY id",
                               (ident.device_id, ident.module_id))
        return [{**dict(r), "properties": json.loads(r["properties"])} for r in rows]

    def c2d_delivered(self, c2d_id: int) -> None:
        with self._tx():
            self.db.execute("UPDATE c2d SET delivered=? WHERE id=?", (utcnow(), c2d_id))

    def c2d_status(self, c2d_id: int) -> Optional[Dict[str, Any]]:
        row = self.db.execute("SELECT id, device_id, module_id, created, delivered FROM c2d WHERE id=?",
                              (c2d_id,)).fetchone()
        return dict(row) if row else None


def message_record(row: sqlite3.Row) -> Dict[str, Any]:
    rec: Dict[str, Any] = {"id": row["id"], "device": row["device_id"], "module": row["module_id"] or None,
                           "received": row["received"], "properties": json.loads(row["properties"]),
                           "size": len(row["body"])}
    rec.update(decode_body(bytes(row["body"])))
    return rec


def parse_json_object(text: str, what: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UserError(f"{what}: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise UserError(f"{what}: expected a JSON object")
    return value

