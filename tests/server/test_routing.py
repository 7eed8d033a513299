"""The status route exists only where a status source is given (standalone), never in serve."""

from jwks_operator.server import routing
from jwks_operator.server.routing import Router


def test_the_status_route_is_served_only_with_a_status_source() -> None:
    with_status = Router(serve_status=True).resolve("/default/demo/status")
    assert (with_status.kind, with_status.namespace, with_status.name) == (
        routing.STATUS,
        "default",
        "demo",
    )
    assert Router().resolve("/default/demo/status").kind == routing.NOT_FOUND
    assert Router(serve_status=True).resolve("/default/demo/statuses").kind == routing.NOT_FOUND
    assert Router(serve_status=True).resolve("/default/bad%2Fname/status").kind == routing.NOT_FOUND
