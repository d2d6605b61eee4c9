"""The test management service itself: credentials, the real shape with its
quirks, run-time changes and failure modes, and that mpass-guard's registry
parser (through ``examples/registry_permissions``) reads what it serves.

No Envoy here: the filter-level registry tests build on this service.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import harness
import mgmt_service as ms
from mgmt_service import ManagementService

EXAMPLE = harness.REPO / "target" / "release" / "examples" / "registry_permissions"


def get(service: ManagementService, path: str, authorization: str | None = "right",
        timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(service.url(path))
    if authorization == "right":
        req.add_header("Authorization", service.authorization)
    elif authorization is not None:
        req.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def permissions(service: ManagementService, tmp_path: Path, *client_ids: str,
                phase: str = "production") -> dict:
    """What mpass-guard's registry parser reads from the service's two documents."""
    example = harness.require_file(EXAMPLE, "the registry_permissions example", "run `make build`")
    idps, sps = tmp_path / "idps.json", tmp_path / "sps.json"
    idps.write_bytes(get(service, ms.IDPS_PATH)[2])
    sps.write_bytes(get(service, ms.SPS_PATH)[2])
    r = subprocess.run([str(example), str(idps), str(sps), phase, *client_ids],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def orgs(p: dict) -> list[tuple[str, bool]]:
    return [(o["organisation"], o["all_services"]) for o in p["organisations"]]


@pytest.fixture
def service():
    with ManagementService() as s:
        yield s


def test_documents_need_the_basic_credentials(service):
    wrong = "Basic " + base64.b64encode(b"mpass-guard:wrong").decode()
    for auth in (None, wrong, "Bearer x"):
        status, headers, _ = get(service, ms.IDPS_PATH, authorization=auth)
        assert status == 401, auth
        assert headers["www-authenticate"].startswith("Basic")
    assert service.unauthorised == 3
    status, _, body = get(service, ms.IDPS_PATH)
    assert status == 200
    assert b"identityProviders" in body


def test_documents_have_the_real_shape_quirks_included(service):
    idps = get(service, ms.IDPS_PATH)[2].decode()
    sps = get(service, ms.SPS_PATH)[2].decode()
    # The polymorphic type, written twice.
    assert '"type": "wilma", "type": "wilma"' in idps
    assert '"type": "oidc", "type": "oidc"' in sps
    # Python's json keeps the last duplicate, so the documents still parse here.
    by_id = {i["id"]: i for i in json.loads(idps)["identityProviders"]}
    assert by_id[1000125]["permissions"] == [], "an empty list: every service"
    assert by_id[1000126]["active"] is False
    assert {i["deploymentPhase"] for i in by_id.values()} == {0, 1, 2}
    members = by_id[1000123]["permissions"][0]["to"]["integrations"]
    assert members == [{"type": "oidc", "clientId": ms.CLIENT_ID},
                       {"type": "saml", "entityId": ms.SAML_ENTITY_ID}]
    # A set in full the first time, by bare id after that.
    services = json.loads(sps)["serviceProviders"]
    sets_of = {s["id"]: s["integrationSets"] for s in services}
    assert sets_of[2000210][0]["id"] == ms.SET_OPPIMATERIAALI
    assert sets_of[2000211] == [ms.SET_OPPIMATERIAALI]
    assert len(re.findall(r'"set": \{"type": "sp"', sps)) == len(
        {x if isinstance(x, int) else x["id"] for v in sets_of.values() for x in v})
    # Booleans as strings; empty-content attributes dropped.
    attrs = {s["id"]: s["configurationEntity"]["attributes"] for s in services}
    assert attrs[2000210] == [{"type": "data", "name": "allowtestlearnerid", "content": "true"}]
    assert attrs[2000211] == []
    assert '"clientKey"' not in idps
    # Two active service providers share one client id.
    dup = [s for s in services if s["active"]
           and s["configurationEntity"]["sp"].get("clientId") == ms.DUPLICATE_CLIENT_ID]
    assert len(dup) == 2


def test_the_registry_parser_reads_what_the_service_serves(service, tmp_path):
    p = permissions(service, tmp_path, ms.CLIENT_ID)
    assert p["found"] is True
    assert orgs(p) == [(ms.KAIKKIKUNTA, True), (ms.TESTIKUNTA, False)]
    assert p["allow_test_learner_id"] is True
    assert p["duplicate_client_id"] == []
    # Inactive and other-phase integrations are not read.
    assert 1000126 not in p["identity_providers"] and 4000001 not in p["identity_providers"]
    assert 2000216 not in p["service_providers"] and 5000210 not in p["service_providers"]
    saml = permissions(service, tmp_path, ms.SAML_ENTITY_ID)
    assert (ms.TESTIKUNTA, False) in orgs(saml), "the set given by bare id still links"
    assert saml["allow_test_learner_id"] is False


def test_other_phases_are_read_apart(service, tmp_path):
    testing = permissions(service, tmp_path, ms.CLIENT_ID, phase="testing")
    assert orgs(testing) == [(ms.TESTIVAIHE, False)]
    pre = permissions(service, tmp_path, ms.CLIENT_ID, phase="preproduction")
    assert pre["found"] is False, "no preproduction service provider"


def test_a_permission_withdrawn_at_run_time_is_gone_from_the_next_documents(service, tmp_path):
    assert (ms.TESTIKUNTA, False) in orgs(permissions(service, tmp_path, ms.CLIENT_ID))
    service.withdraw(1000123, ms.SET_OPPIMATERIAALI)
    after = permissions(service, tmp_path, ms.CLIENT_ID)
    assert ms.TESTIKUNTA not in [o for o, _ in orgs(after)]
    # Testikunta still permits the library through both of its idps.
    assert (ms.TESTIKUNTA, False) in orgs(permissions(service, tmp_path, ms.LIBRARY_CLIENT_ID))


def test_withdrawing_the_last_permission_is_refused_because_empty_means_every_service(service):
    with pytest.raises(ValueError, match="every service"):
        service.withdraw(1000127, ms.SET_MUU)
    assert service.registry.idp(1000127).permissions == [ms.SET_MUU]


def test_a_duplicate_client_id_is_reported_by_the_parser(service, tmp_path):
    p = permissions(service, tmp_path, ms.DUPLICATE_CLIENT_ID)
    assert p["duplicate_client_id"] == [ms.DUPLICATE_CLIENT_ID]
    assert permissions(service, tmp_path, ms.CLIENT_ID)["duplicate_client_id"] == []
    service.add_service(ms.Sp(2000299, "oidc", ms.CLIENT_ID, "Kopio", [ms.SET_MUU]))
    assert permissions(service, tmp_path, ms.CLIENT_ID)["duplicate_client_id"] == [ms.CLIENT_ID]


def test_inactivating_a_service_removes_it_from_its_sets(service):
    service.set_active(2000211, False)
    idps = json.loads(get(service, ms.IDPS_PATH)[2])["identityProviders"]
    members = next(i for i in idps if i["id"] == 1000123)["permissions"][0]["to"]["integrations"]
    assert members == [{"type": "oidc", "clientId": ms.CLIENT_ID}]


def test_failure_modes_answer_as_asked(service, tmp_path):
    service.status(500)
    assert get(service, ms.IDPS_PATH)[0] == 500
    service.garbage(only=ms.SPS_PATH)
    assert get(service, ms.IDPS_PATH)[0] == 500, "the global mode stays for other paths"
    status, _, body = get(service, ms.SPS_PATH)
    assert status == 200 and not body.startswith(b"{")
    service.ok().oversized(4096)
    status, _, body = get(service, ms.IDPS_PATH)
    assert status == 200 and len(body) > 4096 and json.loads(body)["identityProviders"]
    service.ok().slow(2.0)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        get(service, ms.IDPS_PATH, timeout=0.3)
    service.ok()
    port = service.port
    service.down()
    with pytest.raises(urllib.error.URLError):
        get(service, ms.IDPS_PATH, timeout=2)
    service.up()
    assert service.port == port
    assert get(service, ms.IDPS_PATH)[0] == 200
    assert service.count(ms.IDPS_PATH) >= 5


def test_the_parser_refuses_garbage_it_is_served(service, tmp_path):
    example = harness.require_file(EXAMPLE, "the registry_permissions example", "run `make build`")
    idps = tmp_path / "idps.json"
    sps = tmp_path / "sps.json"
    service.garbage(only=ms.IDPS_PATH)
    idps.write_bytes(get(service, ms.IDPS_PATH)[2])
    sps.write_bytes(get(service, ms.SPS_PATH)[2])
    r = subprocess.run([str(example), str(idps), str(sps), "production", ms.CLIENT_ID],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "malformed provisioning document" in r.stderr


def test_the_saved_fixtures_are_what_the_service_serves(service, tmp_path):
    ms.write_fixtures(str(tmp_path))
    fixtures = harness.REPO / "tests" / "fixtures" / "registry"
    for name in ("identityproviders.json", "serviceproviders.json", "snapshot.json"):
        assert (fixtures / name).read_bytes() == (tmp_path / name).read_bytes(), (
            f"{name} is out of date: see tests/fixtures/registry/README.md")
    assert (fixtures / "identityproviders.json").read_bytes().rstrip() == get(service, ms.IDPS_PATH)[2]
