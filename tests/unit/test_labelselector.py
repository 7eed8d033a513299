"""``--keyset-selector``: Kubernetes label selectors parsed, refused with a reason, and matched.

The matching table is Kubernetes' own semantics (k8s.io/apimachinery/pkg/labels): ``!=`` and
``notin`` also select objects without the label. The real API server applies the same text
in tests/e2e_cluster/test_shards.py.
"""

import kopf
import pytest

from jwks_operator.core.contract import GROUP, PLURAL, VERSION
from jwks_operator.core.labelselector import SelectorError, parse_selector
from jwks_operator.operator.settings import operator_settings


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("jwks.dev/shard=a", "jwks.dev/shard=a"),
        ("jwks.dev/shard==a", "jwks.dev/shard=a"),
        (" tier != gold ", "tier!=gold"),
        ("team", "team"),
        ("!team", "!team"),
        ("env in (prod, staging)", "env in (prod,staging)"),
        ("env notin (dev)", "env notin (dev)"),
        ("a=1,!b,c in (x,y),d", "a=1,!b,c in (x,y),d"),
        ("k=", "k="),
        ("example.com/Name_1.x=V-2", "example.com/Name_1.x=V-2"),
    ],
)
def test_valid_selectors_parse_to_the_text_sent_to_the_api_server(
    text: str, canonical: str
) -> None:
    assert str(parse_selector(text)) == canonical
    assert str(parse_selector(canonical)) == canonical


MATCHES = [
    ("jwks.dev/shard=a", {"jwks.dev/shard": "a"}, True),
    ("jwks.dev/shard=a", {"jwks.dev/shard": "b"}, False),
    ("jwks.dev/shard=a", {}, False),
    ("jwks.dev/shard!=a", {"jwks.dev/shard": "b"}, True),
    ("jwks.dev/shard!=a", {}, True),
    ("jwks.dev/shard!=a", {"jwks.dev/shard": "a"}, False),
    ("s in (a,b)", {"s": "b"}, True),
    ("s in (a,b)", {"s": "c"}, False),
    ("s in (a,b)", {}, False),
    ("s notin (a,b)", {"s": "c"}, True),
    ("s notin (a,b)", {}, True),
    ("s notin (a,b)", {"s": "a"}, False),
    ("s", {"s": ""}, True),
    ("s", {"t": "x"}, False),
    ("!s", {"t": "x"}, True),
    ("!s", {"s": "x"}, False),
    ("s=", {"s": ""}, True),
    ("s=a,t", {"s": "a", "t": "1"}, True),
    ("s=a,t", {"s": "a"}, False),
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHES)
def test_matching_follows_kubernetes(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


def test_no_labels_at_all_is_an_object_without_labels() -> None:
    assert parse_selector("!s").matches(None)
    assert not parse_selector("s=a").matches(None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the selector is empty"),
        ("   ", "the selector is empty"),
        ("a=b c", "expected ',' between requirements, found 'c'"),
        ("a=b=c", "expected ',' between requirements, found '='"),
        ("a=b,", "expected a label key, found the end"),
        ("!", "expected a label key, found the end"),
        ("a in b", "expected '(' after 'a' in, found 'b'"),
        ("a in ()", "the value set must not be empty"),
        ("a in (x", "expected ',' or ')' in 'a' in (...), found the end"),
        ("a in (x y)", "expected ',' or ')' in 'a' in (...), found 'y'"),
        ("a>1", "the operator '>' (numeric comparison) is not supported"),
        ("a<1", "the operator '<' (numeric comparison) is not supported"),
        ("Jwks.Dev/shard=a", "the prefix before '/' must be a DNS subdomain"),
        ("/shard=a", "the prefix before '/' must be a DNS subdomain"),
        ("jwks.dev/=a", "the name must be 1-63 letters"),
        ("-a=b", "the name must be 1-63 letters"),
        ("a" * 64 + "=b", "the name must be 1-63 letters"),
        ("a=b/c", "label value 'b/c'"),
        ("a=" + "v" * 64, "at most 63 letters"),
        ("a in (x,-y)", "label value '-y'"),
        ("a = (x)", "expected a label value for 'a', found '('"),
    ],
)
def test_invalid_selectors_say_why(text: str, reason: str) -> None:
    with pytest.raises(SelectorError) as refused:
        parse_selector(text)
    assert reason in str(refused.value)


def test_the_selector_goes_to_the_api_server_for_keysets_only() -> None:
    """Kopf adds ``settings.watching.label_selectors`` to the LIST and WATCH of a resource."""
    keysets = kopf.Resource(GROUP, VERSION, PLURAL)
    secrets = kopf.Resource("", "v1", "secrets")
    settings = operator_settings("jwks.dev/shard=a")
    assert list(settings.watching.label_selectors.collect(keysets)) == ["jwks.dev/shard=a"]
    # Kopf watches no Secret at all (the operator's own cache does, by MANAGED_SELECTOR).
    assert list(settings.watching.label_selectors.collect(secrets)) == []
    assert list(operator_settings().watching.label_selectors.collect(keysets)) == []
