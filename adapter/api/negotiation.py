"""Content negotiation and query parsing for the API edge (pure, no I/O)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from adapter.core.errors import BadRequest, NotAcceptable
from adapter.core.selectors import EVERYTHING, Selector, SelectorError, parse_selector

MAX_QUERY_LENGTH = 4096  # below aiohttp's request-line limit, so we answer with a Status
_JSON_TYPES = frozenset({"*/*", "application/*", "application/json"})


def accepts_json(accept: str | None) -> bool:
    """True when ``accept`` admits plain ``application/json``.

    ``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`` asks for
    aggregated discovery, which we do not serve: alone it is not acceptable (406), so
    the aggregator falls back to per-version discovery. With a plain JSON or ``*/*``
    alternative in the list, plain JSON is served.
    """
    if not accept or not accept.strip():
        return True
    for media_range in accept.split(","):
        media_type, _, params = media_range.strip().partition(";")
        if media_type.strip().lower() not in _JSON_TYPES:
            continue
        names = {p.split("=", 1)[0].strip().lower() for p in params.split(";") if p.strip()}
        if not names & {"g", "v", "as"}:
            return True
    return False


def require_json(accept: str | None) -> None:
    if not accepts_json(accept):
        raise NotAcceptable("only the following media types are accepted: application/json")


def selectors_from_query(query: str) -> tuple[Selector, Selector]:
    """(labelSelector, metricLabelSelector) from a raw query string.

    Raises BadRequest for oversized query strings, invalid UTF-8 and invalid
    selectors. The first occurrence of a repeated parameter wins, as in Go.
    """
    if len(query) > MAX_QUERY_LENGTH:
        raise BadRequest(f"query string too long ({len(query)} > {MAX_QUERY_LENGTH} bytes)")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=64)
    except UnicodeDecodeError as e:
        raise BadRequest("query string is not valid UTF-8") from e
    except ValueError as e:
        raise BadRequest("too many query parameters") from e
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(key, value)
    return (
        _selector(params.get("labelSelector", ""), "labelSelector"),
        _selector(params.get("metricLabelSelector", ""), "metricLabelSelector"),
    )


def _selector(text: str, parameter: str) -> Selector:
    if not text:
        return EVERYTHING
    try:
        return parse_selector(text)
    except SelectorError as e:
        raise BadRequest(f"invalid {parameter}: {e}") from e
