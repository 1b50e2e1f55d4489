"""The request target: computed once, then the only view of the path anyone uses.

Authentication (always-allowed probes), authorization, the access log, the
concurrency budgets and routing all read ``request[TARGET]``, so the path that
is authorized is by construction the path that is served and logged.

RFC 9112 section 3.2 rules, applied before anything else runs:

- origin-form (``/path?query``) is served as is;
- absolute-form (``https://host/path?query``) is normalized to its path and
  query (section 3.2.2: a server must accept it; the authority replaces
  ``Host``, which we do not use for anything);
- authority-form and asterisk-form, fragments (``#``), dot segments (``.``,
  ``..``), paths starting with ``//``, control characters and backslashes are
  refused with 400 (percent-encoded dots are refused by the path parsers);
- an HTTP/1.1 request without exactly one ``Host`` header is refused with 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from adapter.core.errors import BadRequest

MAX_TARGET_LENGTH = 8190

_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\#]")


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """The normalized request target: ``path`` percent-encoded, ``query`` raw."""

    path: str
    """Origin-form path, still percent-encoded, without the query."""
    query: str
    """Raw query string, without ``?`` (may be empty)."""
    absolute_form: bool = False
    """The client sent ``scheme://authority/path``; logged, otherwise served alike."""

    @property
    def metric_selector(self) -> bool:
        """True when the query carries a non-empty ``metricLabelSelector``.

        Such reads may need a backend query; they get a budget of their own.
        The first occurrence wins, as in the handler; an unparsable query is
        False (the handler answers it with 400 without touching a backend).
        """
        if "metricLabelSelector" not in self.query:
            return False
        try:
            pairs = parse_qsl(self.query, keep_blank_values=True, max_num_fields=64)
        except ValueError:
            return False
        for key, value in pairs:
            if key == "metricLabelSelector":
                return bool(value)
        return False


TARGET = web.RequestKey("target", RequestTarget)


def parse_target(raw: str) -> RequestTarget:
    """Normalize a raw request target (as on the request line). Raises BadRequest."""
    if len(raw) > MAX_TARGET_LENGTH:
        raise BadRequest("request target too long")
    if _BAD_CHARS.search(raw):
        raise BadRequest("request target contains a fragment or characters not allowed in a URI")
    absolute = False
    if not raw.startswith("/"):
        scheme, _, _ = raw.partition(":")
        if scheme.lower() not in {"http", "https"}:
            raise BadRequest("only origin-form and absolute-form request targets are served")
        try:
            parts = urlsplit(raw)
        except ValueError as e:
            raise BadRequest("invalid absolute-form request target") from e
        if not parts.netloc or parts.username is not None or parts.password is not None:
            raise BadRequest("invalid absolute-form request target")
        path, query = parts.path or "/", parts.query
        absolute = True
        if not path.startswith("/"):
            raise BadRequest("invalid absolute-form request target")
    else:
        path, _, query = raw.partition("?")
    if path.startswith("//"):
        raise BadRequest("request path must not start with //")
    if any(segment in {".", ".."} for segment in path.split("/")):
        raise BadRequest("request path must not contain . or .. segments")
    return RequestTarget(path, query, absolute)


@web.middleware
async def request_target(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Compute ``request[TARGET]`` once; raise BadRequest for what RFC 9112 refuses."""
    if request.version >= (1, 1) and len(request.headers.getall(hdrs.HOST, ())) != 1:
        raise BadRequest("an HTTP/1.1 request needs exactly one Host header")
    request[TARGET] = parse_target(request.raw_path)
    return await handler(request)


def printable_target(request: web.BaseRequest) -> str:
    """The target for logs: the normalized path when there is one, else the raw one escaped."""
    target: RequestTarget | None = request.get(TARGET)
    if target is not None:
        return target.path[:2048]
    raw = str(request.raw_path)
    return raw[:256].encode("ascii", "backslashreplace").decode("ascii")
