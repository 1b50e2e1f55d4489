"""No-cluster mode: client certificates from --client-ca-file only, all authenticated allowed."""

from __future__ import annotations

import trustme

from adapter.auth.authenticator import Authenticator, AuthRequest
from adapter.auth.authorizer import StandaloneAuthorizer, request_attributes
from adapter.auth.trust import TrustConfig, TrustState
from adapter.auth.user import UserInfo


async def test_standalone_needs_a_client_certificate() -> None:
    ca = trustme.CA()
    authn = Authenticator(TrustState(TrustConfig(client_ca_pem=ca.cert_pem.bytes())))
    cert = ca.issue_cert("hpa", common_name="hpa")
    der = __import__("ssl").PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())
    assert await authn.authenticate(AuthRequest(headers=[("Authorization", "Bearer x")])) is None
    result = await authn.authenticate(AuthRequest(headers=[], peer_cert_der=der))
    assert result is not None
    assert (result.user.name, result.method) == ("hpa", "x509")
    decision = await StandaloneAuthorizer().authorize(
        UserInfo("hpa"), request_attributes("GET", "/apis/custom.metrics.k8s.io/v1beta2/nodes/n/m")
    )
    assert (decision.allowed, decision.source) == (True, "standalone")
