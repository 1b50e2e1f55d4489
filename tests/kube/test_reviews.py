"""KubeReviews: replies as objects, every failure an adapter.kube.errors type without the body."""

from __future__ import annotations

import pytest

from adapter.kube.errors import KubeAPIError, KubeUnavailable
from adapter.kube.k8s import Configuration, KubeClient
from adapter.kube.reviews import KubeReviews
from tests.fakes.kube_auth_api import KubeAuthState, serve_auth_api

TOKEN_REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview"}


async def test_reviews_and_their_http_failures() -> None:
    state = KubeAuthState(tokens={"good": {"username": "alice"}})
    async with serve_auth_api(state) as url:
        api_client = KubeClient(Configuration(host=url))
        try:
            reviews = KubeReviews(api_client)
            reply = await reviews.create_token_review({**TOKEN_REVIEW, "spec": {"token": "good"}})
            assert reply["status"]["user"] == {"username": "alice"}

            state.fail = 503
            with pytest.raises(KubeUnavailable) as unavailable:
                await reviews.create_token_review({**TOKEN_REVIEW, "spec": {"token": "good"}})
            assert (str(unavailable.value), unavailable.value.status) == (
                "TokenReview: HTTP 503",
                503,
            )

            state.fail = 403
            with pytest.raises(KubeAPIError) as refused:
                await reviews.create_subject_access_review({"spec": {"user": "alice"}})
            assert not isinstance(refused.value, KubeUnavailable)
            assert str(refused.value) == "SubjectAccessReview: HTTP 403"
        finally:
            await api_client.close()


async def test_an_unreachable_api_is_unavailable_and_names_no_token() -> None:
    async with serve_auth_api(KubeAuthState()) as url:
        pass  # the port is closed now
    api_client = KubeClient(Configuration(host=url))
    try:
        with pytest.raises(KubeUnavailable) as caught:
            await KubeReviews(api_client).create_token_review(
                {**TOKEN_REVIEW, "spec": {"token": "secret-token"}}
            )
        assert str(caught.value).startswith("TokenReview: ")
        assert "secret-token" not in str(caught.value)
    finally:
        await api_client.close()
