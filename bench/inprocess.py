"""Requests through the server's handler without a socket, for the in-process figures.

aiohttp's ``make_mocked_request`` builds the request object its parser would build (with
mocks for the socket side, which are slow: so requests are built before the timed loop,
and aiohttp's own parsing is not in these figures). The handler's coroutine never awaits
on the document and verify paths, so it is driven to its end with one ``send``.
"""

import sys
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from jwks_operator.server.app import Responder


def finish(coroutine: Coroutine[Any, Any, web.StreamResponse]) -> web.StreamResponse:
    try:
        coroutine.send(None)
    except StopIteration as done:
        response: web.StreamResponse = done.value
        return response
    raise RuntimeError("the handler awaited: not an in-process answer")


class _Transport:
    """Enough of a transport for the handler: it asks for its protocol, and is told none."""

    def get_protocol(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def request(path: str, headers: Mapping[str, str] | None = None) -> web.BaseRequest:
    """``GET path`` as aiohttp would hand it to the handler."""
    return make_mocked_request(
        "GET", path, headers={"Host": "jwks", **(headers or {})}, transport=_Transport()
    )


def answer(responder: Responder, prepared: web.BaseRequest) -> web.StreamResponse:
    """The handler's response to a request built by ``request``."""
    return finish(responder.handle(prepared))
