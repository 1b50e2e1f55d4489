"""TokenReview and SubjectAccessReview: the API calls delegated authentication needs.

``KubeReviews`` implements ``adapter.auth.tokens.TokenReviewAPI`` and
``adapter.auth.authorizer.SubjectAccessReviewAPI`` (ClusterRole
``system:auth-delegator``). Every failure is an ``adapter.kube.errors`` exception
(``KubeUnavailable`` when the API could not be reached or answered 429/5xx,
``KubeAPIError`` otherwise) whose message never contains the request body: a
TokenReview's body is a bearer token.
"""

from __future__ import annotations

from adapter.kube.errors import KubeAPIError, KubeUnavailable, error_from_status
from adapter.kube.k8s import KubeClient
from adapter.kube.rest import TRANSPORT_ERRORS, JSONObject, open_request, parse_object

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105  (a path)
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class KubeReviews:
    """POSTs reviews through a ``KubeClient`` (owned by the caller)."""

    def __init__(self, api_client: KubeClient, request_timeout: float = 10.0) -> None:
        self._client = api_client
        self._timeout = request_timeout

    async def create_token_review(self, body: JSONObject) -> JSONObject:
        """The reviewed TokenReview. Transport errors name their type only (no token)."""
        return await self._create(TOKEN_REVIEWS, body, "TokenReview", detail=False)

    async def create_subject_access_review(self, body: JSONObject) -> JSONObject:
        """The reviewed SubjectAccessReview."""
        return await self._create(SUBJECT_ACCESS_REVIEWS, body, "SubjectAccessReview", detail=True)

    async def _create(self, path: str, body: JSONObject, what: str, *, detail: bool) -> JSONObject:
        try:
            response = await open_request(
                self._client, "POST", path, body=body, request_timeout=self._timeout
            )
        except (*TRANSPORT_ERRORS, ValueError) as e:
            text = f"{what}: {type(e).__name__}: {e}" if detail else f"{what}: {type(e).__name__}"
            raise KubeUnavailable(text) from e
        async with response:
            if response.status >= 300:
                raise _http_error(response.status, what)
            try:
                raw = await response.read()
            except TRANSPORT_ERRORS as e:
                raise KubeUnavailable(f"{what}: unreadable reply ({type(e).__name__})") from e
        try:
            return parse_object(raw, f"a {what} reply")
        except KubeAPIError as e:
            cause = e.__cause__
            if cause is not None:  # not JSON at all
                raise KubeAPIError(f"{what}: unreadable reply ({type(cause).__name__})") from e
            raise KubeAPIError(f"{what}: reply is not an object") from e


def _http_error(status: int, what: str) -> KubeAPIError:
    """The class ``error_from_status`` picks, with a message that quotes nothing sent back."""
    error = error_from_status(status, None)
    return type(error)(f"{what}: HTTP {status}", status=status, reason=error.reason)
