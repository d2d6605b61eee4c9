"""A short run of the soak (tests/e2e/soak.py; `make soak` runs it for
minutes): traffic of every kind while the key server flaps and rotates."""

from __future__ import annotations

import json
import os

import soak


def test_under_load_with_a_flapping_key_server_nothing_reaches_the_upstream_that_should_not():
    seconds = float(os.environ.get("SOAK_SECONDS", "20"))
    report = soak.run(seconds)
    print(json.dumps(report, indent=2, default=str))
    assert report["invariant_violations"] == 0, report["violation_samples"]
    # Key b is in every key set served: flapping never fails its tokens.
    assert report["stable_key_non_200"] == {}, report["outcomes"]
    assert report["other_5xx"] == 0, report["outcomes"]
    assert report["requests_sent"] > 200, report
    # Every kind of traffic was exercised and answered as it must be.
    kinds = {k.split()[0] for k in report["outcomes"]}
    assert {"valid-b", "bad-signature", "alg-none", "two-tokens", "no-token", "open"} <= kinds
    for k, n in report["outcomes"].items():
        kind, status = k.split()[0], k.split()[1]
        if kind in {"bad-signature", "alg-none", "two-tokens", "no-token", "garbage"}:
            assert status == "401", k
        if kind == "wrong-audience":
            assert status in {"401", "403"}, k
