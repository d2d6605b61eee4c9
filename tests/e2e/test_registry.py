"""Organisations from the MPASSid management service, through the real Envoy:
mpass-guard reads the test-controlled provisioning API
(``mgmt_service.ManagementService``, the real shape with its quirks) through an
Envoy cluster with HTTP Basic credentials from the VM environment, and the
contract ``organisations_from: "registry"`` lets through only users of the
organisations that permit the service. Judged by what the client got AND what
the recording upstream received.

Each test starts its own Envoy (registry state is per VM) with short timings:
refresh every 1 s, a 500 ms timeout, last-good kept for 3 s.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import harness
import mgmt_service as ms
from harness import Envoy, key_path, mint, static_cluster
from mgmt_service import ManagementService

ISS = "https://mpass-proxy-test.csc.fi"
OPPI = "/oppi/materiaali"
DUP = "/kaksois/palvelu"
UNAVAILABLE = {"error": "temporarily_unavailable", "reason": "registry_unavailable"}
STAT = "wasmcustom.mpass_guard."


def plugin_config(service: ManagementService, **registry: Any) -> dict[str, Any]:
    return {
        "issuers": [{"issuer": ISS, "allowed_algorithms": ["RS256"],
                     "local_jwks": {"inline_string": harness.jwks(
                         (key_path("rsa-a.pem"), "rsa-a", "RS256"))}}],
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        "registry": {
            "cluster": "mgmt", "base_uri": service.base_url,
            "username_env": "MGMT_USER", "password_env": "MGMT_PASSWORD",
            "deployment_phase": "production",
            "refresh_interval": "1s", "timeout": "500ms", "max_stale": "3s",
            **registry,
        },
        "providers": {
            "oppi": {"audiences": [ms.CLIENT_ID], "match": {"path_prefixes": ["/oppi/"]},
                     "contract": {"organisations_from": "registry", "allow_test_learner_id": True,
                                  "release": {"uid": {}, "given_name": {}}}},
            "kaksois": {"audiences": [ms.DUPLICATE_CLIENT_ID],
                        "match": {"path_prefixes": ["/kaksois/"]},
                        "contract": {"organisations_from": "registry", "release": {"uid": {}}}},
        },
    }


def token(aud: str, org: str, uid: str = "MPASSOID.e2e-registry-user") -> str:
    claims = {"iss": ISS, "aud": aud, "sub": "pairwise-registry-subject",
              "given_name": "Testi", "urn:mpass.id:uid": uid,
              "urn:mpass.id:role": [f"{org};30076;7A;Opettaja;2;1.2.246.562.10.00000000002;"]}
    return mint(key_path("rsa-a.pem"), "RS256", claims, kid="rsa-a")


def bearer(tok: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {tok}")]


def stat(envoy: Envoy, name: str) -> int:
    return int(envoy.stats().get(STAT + name, "0"))


def fetches(envoy: Envoy, result: str) -> int:
    return stat(envoy, f"registry_fetches.stat_prefix=main.result={result}")


def until(predicate, timeout: float = 8.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def assert_released(upstream, resp, tok: str, uid: str = "MPASSOID.e2e-registry-user") -> None:
    assert resp.status == 200, f"{resp.status} {resp.body!r}"
    rec = upstream.received()[-1]
    assert rec.value("x-mpass-uid") == uid
    assert rec.value("x-mpass-given-name") == "Testi"
    assert rec.values("authorization") == [], "the token reached the upstream"
    assert all(tok not in v for _, v in rec.headers)


def assert_refused(upstream, resp, status: int, reason: str) -> None:
    assert resp.status == status, f"{resp.status} {resp.body!r}"
    assert resp.json()["reason"] == reason
    assert upstream.received() == [], "a refused request reached the upstream"


def assert_unavailable(upstream, resp) -> None:
    assert resp.status == 503, f"{resp.status} {resp.body!r}"
    assert resp.json() == UNAVAILABLE
    assert (resp.header("retry-after") or "").isdigit()
    assert resp.header("www-authenticate") is None
    assert upstream.received() == [], "a request without the registry reached the upstream"


@pytest.fixture
def service():
    with ManagementService() as s:
        yield s


@pytest.fixture
def start_guard(upstream, tmp_path):
    started: list[Envoy] = []

    def start(service: ManagementService, **registry: Any) -> Envoy:
        envoy = Envoy(upstream.port, plugin_config(service, **registry),
                      env={"MGMT_USER": service.username, "MGMT_PASSWORD": service.password},
                      workdir=tmp_path / str(len(started)),
                      clusters=[static_cluster("mgmt", service.port, connect_timeout="0.25s")])
        started.append(envoy)
        return envoy.start()

    yield start
    for envoy in started:
        envoy.stop()


def wait_for_snapshot(guard: Envoy, n: int = 1) -> None:
    assert until(lambda: fetches(guard, "ok") >= n), guard.log_tail()


# ------------------------------------------------------------------ tests


def test_the_permitting_organisations_user_is_released_and_others_are_refused(
        service, start_guard, upstream):
    guard = start_guard(service)
    tok = token(ms.CLIENT_ID, ms.TESTIKUNTA)
    # Possibly before the first snapshot: parked, then released.
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)
    upstream.clear()
    for org in (ms.MUU, ms.POISTUNUT, ms.ESITUOTANTO, ms.KAIKKIKUNTA):
        assert_refused(upstream, guard.send(OPPI, bearer(token(ms.CLIENT_ID, org))), 403,
                       "organisation_not_permitted")
    log = guard.log()
    assert "registry loaded, permissions changed" in log
    # "Every service" is not a permission unless opted in; the warning names the organisation.
    assert f"registry: {ms.KAIKKIKUNTA} permits every service" in log
    assert service.password not in log
    assert service.authorization.split()[1] not in log
    assert service.count(ms.IDPS_PATH) >= 1 and service.count(ms.SPS_PATH) >= 1
    assert service.unauthorised == 0, "mpass-guard sent wrong or no Basic credentials"


def test_every_service_counts_for_an_organisation_the_operator_opted_in(
        service, start_guard, upstream):
    guard = start_guard(service, allow_all_services_for=[ms.KAIKKIKUNTA])
    tok = token(ms.CLIENT_ID, ms.KAIKKIKUNTA)
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)


def test_outage_at_start_answers_503_registry_unavailable_then_recovers_without_restart(
        service, start_guard, upstream):
    service.down()
    guard = start_guard(service)
    tok = token(ms.CLIENT_ID, ms.TESTIKUNTA)
    assert_unavailable(upstream, guard.send(OPPI, bearer(tok)))
    # Counters reach Envoy on the filter's tick: wait for them, never sleep.
    assert until(lambda: fetches(guard, "failed") >= 1), guard.log_tail()
    assert fetches(guard, "ok") == 0
    assert "registry refresh failed" in guard.log()
    assert until(lambda: stat(guard, "decisions.stat_prefix=main.provider=oppi.outcome=deny."
                                     "reason=registry_unavailable") >= 1), guard.log_tail()
    service.up()
    wait_for_snapshot(guard)
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)


def test_after_a_good_fetch_an_outage_serves_the_last_good_snapshot_until_max_stale_then_503(
        service, start_guard, upstream):
    guard = start_guard(service, max_stale="5s")
    wait_for_snapshot(guard)
    tok = token(ms.CLIENT_ID, ms.TESTIKUNTA)
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)
    # Envoy keeps its connections to the service open, so the outage is an
    # answer: 503 from the service's front proxy, then nothing at all.
    service.status(503)
    assert until(lambda: fetches(guard, "failed") >= 1), guard.log_tail()
    # Each VM (main thread, worker) refreshes on its own: wait for the
    # worker's failure to show in a request counted as stale.
    def stale_release() -> bool:
        upstream.clear()
        assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)
        return stat(guard, "registry_stale.stat_prefix=main") >= 1
    assert until(stale_release, 3.5), guard.log_tail()
    # max_stale is 5 s: then refused, never released without the registry.
    service.close_connections()
    assert until(lambda: guard.send(OPPI, bearer(tok)).status == 503, 8), guard.log_tail()
    upstream.clear()
    assert_unavailable(upstream, guard.send(OPPI, bearer(tok)))
    assert until(lambda: "past max_stale" in guard.log(), 3), guard.log_tail()
    assert f"{STAT}registry_snapshot_age_seconds.stat_prefix=main" in guard.stats()


def test_a_slow_service_times_out_and_counts_as_a_failed_refresh(service, start_guard, upstream):
    service.slow(2.0)
    guard = start_guard(service)
    tok = token(ms.CLIENT_ID, ms.TESTIKUNTA)
    assert_unavailable(upstream, guard.send(OPPI, bearer(tok)))
    assert until(lambda: fetches(guard, "failed") >= 1), guard.log_tail()
    # Envoy ends the call at `timeout` with its own 504.
    assert "registry refresh failed: identity providers: the response status is 504" in guard.log()
    service.ok()
    wait_for_snapshot(guard)
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)


def test_a_garbage_document_is_a_failed_refresh_and_keeps_the_last_good_snapshot(
        service, start_guard, upstream):
    guard = start_guard(service)
    wait_for_snapshot(guard)
    service.garbage(only=ms.SPS_PATH)
    before = fetches(guard, "failed")
    assert until(lambda: fetches(guard, "failed") > before), guard.log_tail()
    tok = token(ms.CLIENT_ID, ms.TESTIKUNTA)
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)
    assert "registry refresh failed" in guard.log()
    assert "Service Unavailable" not in guard.log(), "a response body reached the log"


def test_a_permission_withdrawn_at_run_time_refuses_the_next_request_without_restart(
        service, start_guard, upstream):
    guard = start_guard(service)
    wait_for_snapshot(guard)
    tok = token(ms.CLIENT_ID, ms.TESTIKUNTA)
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)  # now from the token cache
    service.withdraw(1000123, ms.SET_OPPIMATERIAALI)
    # Each VM (main thread, worker) refreshes on its own, within 1 s; no restart.
    assert until(lambda: guard.send(OPPI, bearer(tok)).status == 403), guard.log_tail()
    upstream.clear()
    assert_refused(upstream, guard.send(OPPI, bearer(tok)), 403, "organisation_not_permitted")
    service.permit(1000123, ms.SET_OPPIMATERIAALI)
    assert until(lambda: guard.send(OPPI, bearer(tok)).status == 200), guard.log_tail()
    assert_released(upstream, guard.send(OPPI, bearer(tok)), tok)


def test_a_client_id_on_two_service_providers_is_refused_for_every_organisation(
        service, start_guard, upstream):
    guard = start_guard(service)
    wait_for_snapshot(guard)
    # Muukunta permits the first copy, Testikunta the second: neither counts.
    for org in (ms.MUU, ms.TESTIKUNTA):
        assert_refused(upstream, guard.send(DUP, bearer(token(ms.DUPLICATE_CLIENT_ID, org))), 403,
                       "organisation_not_permitted")
    assert (f"client id {ms.DUPLICATE_CLIENT_ID} is registered on more than one service provider"
            in guard.log())
