"""A test-controlled MPASSid management service (provisioning API) on 127.0.0.1.

Written from ``shared/mpassid/MANAGEMENT-SERVICE.md``, not from real data. It
serves, under ``<base_url>`` (``http://127.0.0.1:<port>/mpassid``):

- ``GET /api/v2/provisioning/identityproviders`` -> ``{"identityProviders": [...]}``
- ``GET /api/v2/provisioning/serviceproviders``  -> ``{"serviceProviders": [...]}``
- ``GET /api/v2/provisioning/configuration/status``

in the shape the real service writes, quirks included:

- the polymorphic ``type`` of ``idp`` and ``sp`` is written twice (Jackson);
- an integration set is a full object the first time it appears in a response
  and a bare numeric id after that;
- inactive integrations and every deployment phase are listed (no filtering);
- ``permissions: []`` means "every service"; a permission's ``to`` lists the
  set's current active members, sorted by id;
- ``allowtestlearnerid`` is a ``data`` attribute whose content is a string;
  empty-content attributes are dropped;
- a client id may be registered on more than one service provider (the
  default documents hold one such duplicate, ``DUPLICATE_CLIENT_ID``).

Every request needs HTTP Basic credentials (``username``/``password``); others
get 401 with ``WWW-Authenticate: Basic``. Tests change the registry at run time
(``withdraw``, ``permit``, ``allow_all``, ``set_active``, ``set_allow_test_learner_id``,
``add_service``) and the service's behaviour (``down``/``up``, ``slow``,
``garbage``, ``status``, ``oversized``, ``close_connections``; each optionally for one
document only), and read how often each path was asked (``count``, ``wait_for``).
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Callable

from loopback import LOOPBACK, LoopbackServer
PREFIX = "/mpassid"
IDPS_PATH = "/api/v2/provisioning/identityproviders"
SPS_PATH = "/api/v2/provisioning/serviceproviders"
STATUS_PATH = "/api/v2/provisioning/configuration/status"

TESTING, PRODUCTION, PREPRODUCTION = 0, 1, 2

# Education providers (identity-provider organisations) of the default documents.
TESTIKUNTA = "1.2.246.562.10.99887766551"    # two idps; permits oppimateriaali and kirjasto
KAIKKIKUNTA = "1.2.246.562.10.11111111111"   # empty permissions: "every service"
POISTUNUT = "1.2.246.562.10.22222222222"     # inactive idp permitting oppimateriaali
TESTIVAIHE = "1.2.246.562.99.33333333333"    # testing phase only
MUU = "1.2.246.562.10.44444444444"           # permits another service only
ESITUOTANTO = "1.2.246.562.10.66666666666"   # preproduction phase only
SERVICE_ORG = "1.2.246.562.10.99000000777"   # the service providers' organisation

CLIENT_ID = "oppimateriaali-prod"            # set 3000045, allowtestlearnerid "true"
SAML_ENTITY_ID = "https://sp.example.fi/saml"  # also set 3000045 (given by bare id)
LIBRARY_CLIENT_ID = "kirjasto-app"           # set 3000046, allowtestlearnerid "false"
OTHER_CLIENT_ID = "muu-palvelu"              # set 3000099
DUPLICATE_CLIENT_ID = "kaksoispalvelu"       # on two active service providers
RETIRED_CLIENT_ID = "vanha-palvelu"          # inactive service provider

SET_OPPIMATERIAALI, SET_KIRJASTO, SET_MUU = 3000045, 3000046, 3000099


# ---------------------------------------------------------------- the model

@dataclass
class Idp:
    id: int
    oid: str
    org_name: str
    kind: str  # wilma | azure | opinsys | adfs | gsuite
    permissions: list[int]  # set ids; [] = every service
    phase: int = PRODUCTION
    active: bool = True


@dataclass
class Sp:
    id: int
    protocol: str  # oidc | saml
    key: str  # client id or entity id
    name: str
    sets: list[int]
    phase: int = PRODUCTION
    active: bool = True
    allow_test_learner_id: str | None = None  # "true" / "false" / None (absent)


@dataclass
class IntegrationSet:
    id: int
    name: str
    phase: int = PRODUCTION
    active: bool = True
    allow_test_learner_id: str | None = None  # legacy data has it on sets


@dataclass
class Registry:
    idps: list[Idp] = field(default_factory=list)
    sps: list[Sp] = field(default_factory=list)
    sets: list[IntegrationSet] = field(default_factory=list)

    def idp(self, idp_id: int) -> Idp:
        return next(i for i in self.idps if i.id == idp_id)

    def sp(self, sp_id: int) -> Sp:
        return next(s for s in self.sps if s.id == sp_id)

    def set(self, set_id: int) -> IntegrationSet:
        return next(s for s in self.sets if s.id == set_id)

    def members(self, set_id: int) -> list[Sp]:
        """A set's current members: active SPs only (inactivating an SP removes it), by id."""
        return sorted((s for s in self.sps if s.active and set_id in s.sets), key=lambda s: s.id)


def default_registry() -> Registry:
    """The default documents: every quirk once, one active duplicate client id."""
    return Registry(
        idps=[
            Idp(1000123, TESTIKUNTA, "Testikunta", "wilma", [SET_OPPIMATERIAALI, SET_KIRJASTO]),
            Idp(1000124, TESTIKUNTA, "Testikunta", "azure", [SET_KIRJASTO]),
            Idp(1000125, KAIKKIKUNTA, "Kaikkikunta", "azure", []),
            Idp(1000126, POISTUNUT, "Poistunut kunta", "wilma", [SET_OPPIMATERIAALI], active=False),
            Idp(1000127, MUU, "Muukunta", "opinsys", [SET_MUU]),
            Idp(1000128, ESITUOTANTO, "Esituotantokunta", "wilma", [SET_OPPIMATERIAALI],
                phase=PREPRODUCTION),
            Idp(4000001, TESTIVAIHE, "Testivaihe", "wilma", [6000045], phase=TESTING),
        ],
        sps=[
            Sp(2000210, "oidc", CLIENT_ID, "Oppimateriaali", [SET_OPPIMATERIAALI],
               allow_test_learner_id="true"),
            Sp(2000211, "saml", SAML_ENTITY_ID, "Oppimateriaali SAML", [SET_OPPIMATERIAALI]),
            Sp(2000212, "oidc", LIBRARY_CLIENT_ID, "Kirjasto", [SET_KIRJASTO],
               allow_test_learner_id="false"),
            Sp(2000213, "oidc", OTHER_CLIENT_ID, "Muu palvelu", [SET_MUU]),
            Sp(2000214, "oidc", DUPLICATE_CLIENT_ID, "Kaksoispalvelu A", [SET_MUU]),
            Sp(2000215, "oidc", DUPLICATE_CLIENT_ID, "Kaksoispalvelu B", [SET_KIRJASTO]),
            Sp(2000216, "oidc", RETIRED_CLIENT_ID, "Vanha palvelu", [SET_MUU], active=False),
            # The same client id in the testing phase: not a duplicate in production.
            Sp(5000210, "oidc", CLIENT_ID, "Oppimateriaali (testi)", [6000045], phase=TESTING,
               allow_test_learner_id="true"),
        ],
        sets=[
            IntegrationSet(SET_OPPIMATERIAALI, "Oppimateriaali"),
            IntegrationSet(SET_KIRJASTO, "Kirjasto"),
            IntegrationSet(SET_MUU, "Muu"),
            IntegrationSet(6000045, "Oppimateriaali (testi)", phase=TESTING),
        ],
    )


# ------------------------------------------------- rendering, Jackson-style

class Obj:
    """A JSON object that may write a member twice (Jackson's doubled ``type``)."""

    def __init__(self, *pairs: tuple[str, Any]) -> None:
        self.pairs = list(pairs)


def dump(value: Any) -> str:
    if isinstance(value, Obj):
        return "{" + ", ".join(f"{json.dumps(k)}: {dump(v)}" for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return dump(Obj(*value.items()))
    if isinstance(value, list):
        return "[" + ", ".join(dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


STAMP = "2026-03-02T14:05:11.208811"


def _organization(oid: str, name: str, ytunnus: str | None) -> dict[str, Any]:
    # Organization has no NON_NULL: nulls are printed.
    return {"oid": oid, "name": name, "children": None, "ytunnus": ytunnus}


def _attributes(items: list[tuple[str, str, str | None]]) -> list[dict[str, str]]:
    # The list endpoints drop empty-content attributes.
    return [{"type": t, "name": n, "content": c} for t, n, c in items if c]


def _member(sp: Sp) -> dict[str, str]:
    key = "clientId" if sp.protocol == "oidc" else "entityId"
    return {"type": sp.protocol, key: sp.key}


def render_idp(reg: Registry, idp: Idp) -> Obj:
    kind_fields: list[tuple[str, Any]] = {
        "wilma": [("hostname", f"kunta{idp.id}.inschool.fi")],
        "azure": [("entityId", "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"),
                  ("tenantId", "00000000-0000-0000-0000-000000000000")],
        "opinsys": [("tenantId", f"opinsys-{idp.id}")],
    }.get(idp.kind, [("entityId", f"https://idp{idp.id}.example.fi"),
                     ("metadataUrl", f"https://mpass-proxy.csc.fi/metadata/{idp.id}.xml")])
    flow = f"{idp.kind.capitalize()}{idp.id}"
    return Obj(
        ("id", idp.id), ("version", 3), ("lastUpdatedOn", STAMP),
        ("organization", _organization(idp.oid, idp.org_name, "1234567-8")),
        ("integrationSets", []),
        ("discoveryInformation", {"customDisplayName": idp.org_name, "title": "", "showSchools": True,
                                  "schools": ["99001"], "excludedSchools": [],
                                  "earlyEducationProvider": False}),
        ("permissions", [
            {"to": {"id": s, "integrations": [_member(m) for m in reg.members(s)]},
             "lastUpdatedOn": STAMP}
            for s in idp.permissions
        ]),
        ("deploymentPhase", idp.phase), ("deploymentDate", "2024-08-01"), ("active", idp.active),
        ("configurationEntity", Obj(
            ("attributes", _attributes([("data", "datasource", idp.kind),
                                        ("user", "learnerId", "extension_abc_learnerOid"),
                                        ("data", "clientKey", "")])),
            ("idp", Obj(("type", idp.kind), ("type", idp.kind), ("institutionTypes", [11, 15]),
                        ("idpId", f"{idp.kind}_{idp.id}"), ("flowName", flow),
                        ("logoUrl", f"https://mpass-proxy.csc.fi/images/buttons/{idp.id}.png"),
                        *kind_fields)),
        )),
    )


def render_set(s: IntegrationSet) -> Obj:
    return Obj(
        ("id", s.id), ("version", 1), ("lastUpdatedOn", STAMP),
        ("organization", _organization(SERVICE_ORG, "Esimerkki Oy", None)),
        ("permissions", []), ("deploymentPhase", s.phase), ("active", s.active),
        ("configurationEntity", Obj(
            ("attributes", _attributes([("data", "allowtestlearnerid", s.allow_test_learner_id)])),
            ("set", {"type": "sp", "name": s.name}),
        )),
    )


def render_sp(reg: Registry, sp: Sp, seen_sets: set[int]) -> Obj:
    sets: list[Any] = []
    for set_id in (sp.sets if sp.active else []):
        if set_id in seen_sets:
            sets.append(set_id)  # @JsonIdentityInfo: by id after the first time
        else:
            seen_sets.add(set_id)
            sets.append(render_set(reg.set(set_id)))
    if sp.protocol == "oidc":
        metadata = {"client_id": sp.key, "client_secret": "f3a*********",
                    "redirect_uris": [f"https://{sp.id}.example.fi/callback"],
                    "scope": "openid profile", "grant_types": ["authorization_code"],
                    "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic"}
        key = ("clientId", sp.key)
    else:
        metadata = {"entityId": sp.key, "wantAssertionsSigned": True,
                    "assertionConsumerServiceUrls": [{"bindings": "HTTP-POST", "index": 0,
                                                      "isDefault": True,
                                                      "location": f"{sp.key}/SAML2/POST"}],
                    "signingCertificates": ["MIIC..."], "signingCertificates0NotAfter": "2027-01-31"}
        key = ("entityId", sp.key)
    return Obj(
        ("id", sp.id), ("version", 2), ("lastUpdatedOn", STAMP),
        ("organization", _organization(SERVICE_ORG, "Esimerkki Oy", None)),
        ("integrationSets", sets), ("permissions", []),
        ("deploymentPhase", sp.phase), ("active", sp.active),
        ("configurationEntity", Obj(
            ("attributes", _attributes([("data", "allowtestlearnerid", sp.allow_test_learner_id)])),
            ("sp", Obj(("type", sp.protocol), ("type", sp.protocol), ("name", sp.name), key,
                       ("metadata", metadata))),
        )),
    )


def render_identity_providers(reg: Registry) -> bytes:
    return dump(Obj(("identityProviders", [render_idp(reg, i) for i in reg.idps]))).encode()


def render_service_providers(reg: Registry) -> bytes:
    seen: set[int] = set()
    return dump(Obj(("serviceProviders", [render_sp(reg, s, seen) for s in reg.sps]))).encode()


# ------------------------------------------------------------------ server

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-mpassid-voh"

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        ms: ManagementService = self.server.owner  # type: ignore[attr-defined]
        path = self.path.partition("?")[0]
        authorised = ms._authorised(self.headers.get("authorization"))
        mode, arg, status, body = ms._arrived(path, authorised)
        if mode == "slow":
            time.sleep(arg)
        if mode == "close":
            self.close_connection = True
            self.wfile.flush()
            self.connection.close()
            return
        headers = {"content-type": "application/json"}
        if status == 401:
            headers["www-authenticate"] = 'Basic realm="Realm"'
        elif mode == "status":
            status, body = arg, json.dumps({"timestamp": "01-12-2026 10:00:00", "status": arg,
                                            "error": "Internal Server Error"}).encode()
        elif mode == "garbage":
            body = b"<html><body>Service Unavailable</body></html>{{{"
            headers["content-type"] = "text/html"
        elif mode == "oversized" and status == 200:
            body = body[:-1] + b" " * arg + body[-1:]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): that is the point of "slow"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


class ManagementService(LoopbackServer):
    """One provisioning API; every switch takes effect for the next request."""

    handler = _Handler

    def __init__(self, registry: Registry | None = None, username: str = "mpass-guard",
                 password: str | None = None) -> None:
        super().__init__()
        self.username = username
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self._unauthorised = 0
        self.registry = registry if registry is not None else default_registry()
        self._modes: dict[str | None, tuple[str, Any]] = {}
        self.up()

    @property
    def base_url(self) -> str:
        """The ``base_uri`` of mpass-guard's registry configuration."""
        return f"http://{LOOPBACK}:{self._port}{PREFIX}"

    def url(self, path: str) -> str:
        return self.base_url + path

    @property
    def authorization(self) -> str:
        """The right ``Authorization`` header value."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    # -- behaviour (``only``: IDPS_PATH or SPS_PATH; None: every path) -----

    def _set_mode(self, mode: str, arg: Any, only: str | None) -> "ManagementService":
        with self._lock:
            if only is None:
                self._modes = {None: (mode, arg)}
            else:
                self._modes[only] = (mode, arg)
        return self.up()

    def ok(self) -> "ManagementService":
        with self._lock:
            self._modes = {}
        return self.up()

    def slow(self, seconds: float, only: str | None = None) -> "ManagementService":
        return self._set_mode("slow", seconds, only)

    def status(self, code: int = 500, only: str | None = None) -> "ManagementService":
        return self._set_mode("status", code, only)

    def garbage(self, only: str | None = None) -> "ManagementService":
        return self._set_mode("garbage", None, only)

    def oversized(self, extra: int, only: str | None = None) -> "ManagementService":
        """The real document padded with ``extra`` bytes of white space (still valid JSON)."""
        return self._set_mode("oversized", extra, only)

    def close_connections(self, only: str | None = None) -> "ManagementService":
        """Accepts, reads the request, closes without an answer."""
        return self._set_mode("close", None, only)

    # -- registry changes ----------------------------------------------------

    def change(self, fn: Callable[[Registry], None]) -> "ManagementService":
        """Applies ``fn`` to the registry under the lock (any other change)."""
        with self._lock:
            fn(self.registry)
        return self

    def withdraw(self, idp_id: int, set_id: int, allow_empty: bool = False) -> "ManagementService":
        """The organisation's idp no longer permits the set.

        Withdrawing the last one leaves ``[]``, which the real service reads as
        "every service" (there is no deny-all): refused unless ``allow_empty``.
        """
        def go(reg: Registry) -> None:
            idp = reg.idp(idp_id)
            left = [s for s in idp.permissions if s != set_id]
            if not left and not allow_empty:
                raise ValueError(f"idp {idp_id} would permit every service; "
                                 "pass allow_empty=True if that is meant")
            idp.permissions = left
        return self.change(go)

    def permit(self, idp_id: int, set_id: int) -> "ManagementService":
        def go(reg: Registry) -> None:
            idp = reg.idp(idp_id)
            if set_id not in idp.permissions:
                idp.permissions.append(set_id)
        return self.change(go)

    def allow_all(self, idp_id: int) -> "ManagementService":
        """The UI's "Salli kaikki palvelut": an empty permission list."""
        return self.change(lambda reg: setattr(reg.idp(idp_id), "permissions", []))

    def set_active(self, integration_id: int, active: bool) -> "ManagementService":
        def go(reg: Registry) -> None:
            for item in [*reg.idps, *reg.sps, *reg.sets]:
                if item.id == integration_id:
                    item.active = active
                    return
            raise KeyError(integration_id)
        return self.change(go)

    def set_allow_test_learner_id(self, sp_id: int, value: str | None) -> "ManagementService":
        return self.change(lambda reg: setattr(reg.sp(sp_id), "allow_test_learner_id", value))

    def add_service(self, sp: Sp) -> "ManagementService":
        """Registers one more service provider (e.g. a second one with a taken client id)."""
        return self.change(lambda reg: reg.sps.append(copy.deepcopy(sp)))

    # -- documents and observation -------------------------------------------

    def identity_providers(self) -> bytes:
        with self._lock:
            return render_identity_providers(self.registry)

    def service_providers(self) -> bytes:
        with self._lock:
            return render_service_providers(self.registry)

    @property
    def unauthorised(self) -> int:
        """Requests answered 401."""
        with self._lock:
            return self._unauthorised

    # -- handler side ----------------------------------------------------------

    def _authorised(self, header: str | None) -> bool:
        return header is not None and secrets.compare_digest(header.encode(),
                                                             self.authorization.encode())

    def _arrived(self, path: str, authorised: bool) -> tuple[str, Any, int, bytes]:
        with self._cond:
            relative = path[len(PREFIX):] if path.startswith(PREFIX + "/") else None
            if relative is not None:
                self._hit(relative)
            mode, arg = self._modes.get(relative, self._modes.get(None, ("ok", None)))
            if not authorised:
                self._unauthorised += 1
                body = json.dumps({"timestamp": "2026-12-01T10:00:00.000+00:00", "status": 401,
                                   "error": "Unauthorized", "path": path}).encode()
                return mode if mode in ("slow", "close") else "ok", arg, 401, body
            if relative == IDPS_PATH:
                return mode, arg, 200, render_identity_providers(self.registry)
            if relative == SPS_PATH:
                return mode, arg, 200, render_service_providers(self.registry)
            if relative == STATUS_PATH:
                status = [{"updated": False, "lastUpdateTime": None, "deploymentPhase": p,
                           "provisioningLastUpdateTime": "2026-04-20T08:00:00.000114"}
                          for p in (TESTING, PRODUCTION, PREPRODUCTION)]
                return mode, arg, 200, json.dumps(status).encode()
            body = json.dumps({"status": "NOT_FOUND", "timestamp": "01-12-2026 10:00:00",
                               "message": "not found"}).encode()
            return mode if mode in ("slow", "close") else "ok", arg, 404, body


def write_fixtures(directory: str, registry: Registry | None = None) -> None:
    """Writes a saved snapshot in both forms `check --registry` reads."""
    reg = registry if registry is not None else default_registry()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    idps, sps = render_identity_providers(reg), render_service_providers(reg)
    (out / "identityproviders.json").write_bytes(idps + b"\n")
    (out / "serviceproviders.json").write_bytes(sps + b"\n")
    (out / "snapshot.json").write_bytes(
        b'{"identityproviders": ' + idps + b',\n "serviceproviders": ' + sps + b"}\n")


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--write":
        sys.exit("usage: mgmt_service.py --write DIRECTORY")
    write_fixtures(sys.argv[2])
