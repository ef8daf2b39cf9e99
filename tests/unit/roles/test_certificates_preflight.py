"""Bad certificates variables stop the role in preflight, on the controller, with a message naming the variable."""

from __future__ import annotations

import pytest

ROLE = "certificates"
MESH = {"name": "shop", "services": {"web": {"port": 8080, "protocol": "http", "hosts": ["localhost"]}}}


def test_good_variables_pass_preflight(run_preflight) -> None:
    result = run_preflight(
        ROLE,
        {
            "mesh": MESH,
            "certificates_services": [{"name": "web", "owner": "www-data"}],
            "certificates_consul_role": "server",
            "certificates_lifetime": "1d12h",
            "certificates_renew_before": "12h",
            "certificates_sidecar_owners": {"envoy": {"owner": "envoy", "group": "envoy"}},
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Work out the certificates of this host" in result.stdout
    assert "Inspect the certificates" not in result.stdout


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        pytest.param(
            {"certificates_key_type": "dsa"},
            ["certificates_key_type must be one of: ec-p256", "got: dsa"],
            id="key-type",
        ),
        pytest.param(
            {"certificates_consul_role": "leader"},
            ["certificates_consul_role must be one of: none, server, client", "got: leader"],
            id="consul",
        ),
        pytest.param(
            {"certificates_lifetime": "30 days"}, ["certificates_lifetime", '"30 days"', "1d12h"], id="format"
        ),
        pytest.param({"certificates_lifetime": "2m"}, ["certificates_lifetime", "at least 5m"], id="too-short"),
        pytest.param(
            {"certificates_lifetime": "1h", "certificates_renew_before": "2h"},
            ["certificates_renew_before", '"2h"', "shorter than the lifetime"],
            id="window-too-long",
        ),
        pytest.param({"certificates_dir": "certs"}, ["certificates_dir", '"certs"', "absolute"], id="dir"),
        pytest.param(
            {"certificates_textfile_dir": "textfile"}, ["certificates_textfile_dir", '"textfile"'], id="textfile"
        ),
        pytest.param({"certificates_packages": "python3-cryptography"}, ["certificates_packages"], id="packages"),
        pytest.param(
            {"mesh": MESH, "certificates_services": [{"name": "web", "identity": "spiffe://other.mesh/svc/web"}]},
            [
                "host localhost",
                "certificates_services[0].identity",
                "does not match the plan's identity 'spiffe://shop.mesh/ns/default/dc/dc1/svc/web'",
            ],
            id="identity-not-the-plan",
        ),
        pytest.param(
            {"mesh": MESH, "certificates_services": [{"name": "api"}]},
            ["service 'api' is not in the plan (mesh.services has: web)"],
            id="not-in-plan",
        ),
        pytest.param(
            {"certificates_services": [{"name": "web"}]},
            ["certificates_services[0].identity: missing; without `mesh` give the SPIFFE ID"],
            id="no-identity-without-mesh",
        ),
        pytest.param(
            {"certificates_sidecar_owners": {"nginx": {"owner": "x"}}},
            ["certificates_sidecar_owners.nginx", "envoy and haproxy"],
            id="sidecar-owners",
        ),
    ],
)
def test_bad_variables_stop_in_preflight(run_preflight, extra_vars: dict, expected: list[str]) -> None:
    result = run_preflight(ROLE, extra_vars)
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, text
    for fragment in expected:
        assert fragment in text, f"{fragment!r} missing from:\n{text}"
