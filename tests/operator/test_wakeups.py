"""Which watch events wake a keyset's daemon: changes by others, never our own echoes."""

import asyncio

from jwks_operator.core.contract import ROTATE_ANNOTATION
from jwks_operator.operator.wakeups import Waker, Wakers, change_key
from jwks_operator.store.kubernetes import CONFIGMAP, SECRET


def body(generation: int = 1, rotate: str | None = None, **spec: object) -> dict[str, object]:
    annotations = {ROTATE_ANNOTATION: rotate} if rotate else {}
    return {
        "metadata": {"name": "auth", "generation": generation, "annotations": annotations},
        "spec": spec,
        "status": {"revision": generation},
    }


def armed() -> Waker:
    waker = Waker("default", "auth", "uid-1")
    waker.seen = change_key(body())
    waker.targets = {SECRET: "auth-signing", CONFIGMAP: "auth-jwks"}
    return waker


async def test_keyset_events_wake_only_on_spec_generation_or_rotate_changes() -> None:
    waker = Waker("default", "auth", "uid-1")
    assert not waker.keyset_event(body(2))  # not reconciled yet: it will read the body anyway
    waker.seen = change_key(body())
    assert not waker.keyset_event({**body(), "status": {"revision": 9}})  # our status echo
    assert waker.keyset_event(body(2))
    assert waker.keyset_event(body(rotate="now"))
    assert waker.keyset_event(body(algorithm="ES256"))  # spec change even without generation
    assert waker.take() == ["keyset changed"]
    assert waker.take() == []


async def test_object_events_ignore_echoes_and_other_names() -> None:
    waker = armed()
    waker.observed(SECRET, "auth-signing", "10")
    assert not waker.object_event(SECRET, "auth-signing", "MODIFIED", "10")  # our write
    assert not waker.object_event(SECRET, "old-name", "MODIFIED", "99")  # not a target
    assert waker.object_event(CONFIGMAP, "auth-jwks", "MODIFIED", "11")  # someone else's
    assert waker.object_event(SECRET, "auth-signing", "DELETED", "10")  # always news
    assert waker.take() == ["ConfigMap auth-jwks changed", "Secret auth-signing deleted"]


async def test_an_event_that_overtakes_our_read_is_dropped_when_the_read_lands() -> None:
    waker = armed()
    assert waker.object_event(SECRET, "auth-signing", None, "20")  # initial listing
    waker.observed(SECRET, "auth-signing", "20")  # the daemon's read catches up
    assert waker.take() == []


async def test_wait_times_out_wakes_and_stops() -> None:
    waker = armed()
    assert await waker.wait(0.01) is False
    assert await waker.wait(0) is False

    async def poke_soon() -> None:
        await asyncio.sleep(0.01)
        waker.poke("test")

    poker = asyncio.create_task(poke_soon())
    assert await waker.wait(5) is True
    await poker
    assert waker.take() == ["test"]
    waker.stop()
    assert await waker.wait(5) is True and waker.stopping
    assert waker.take() == [] and await waker.wait(0) is True  # stays set once stopping


def test_registry_replaces_and_unregisters_only_its_own_waker() -> None:
    wakers = Wakers()
    first = wakers.register("default", "auth", "uid-1")
    second = wakers.register("default", "auth", "uid-2")  # re-created keyset
    wakers.unregister(first)
    assert wakers.get("default", "auth") is second and len(wakers) == 1
    wakers.unregister(second)
    assert wakers.get("default", "auth") is None and list(wakers) == []
