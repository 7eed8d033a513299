"""The standalone building blocks in-process: config parsing, the local-dir store, the lock,
the publish directory and config application (fast; the CLI tests cover the wiring)."""

import asyncio
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from jwks_operator.core.guard import UnsafeJwksError
from jwks_operator.core.spec import parse_spec
from jwks_operator.reconcile import reconcile
from jwks_operator.server.snapshot import SnapshotStore
from jwks_operator.standalone.app import Options, Standalone
from jwks_operator.standalone.config import ConfigError, parse_config
from jwks_operator.standalone.publishdir import PublishDir
from jwks_operator.standalone.statedir import StateDirError, StateDirLock, prepare_state_dir
from jwks_operator.store.base import WriteOutcome
from jwks_operator.store.localdir import LocalDirStore, atomic_write, private_path, public_path
from tests.standalone.support import keyset_doc


def config_text(*docs: object) -> str:
    return yaml.safe_dump_all(list(docs))


# -- config --------------------------------------------------------------------------------


def test_config_defaults_and_annotations() -> None:
    doc = keyset_doc("a", None, annotations={"jwks.dev/rotate": "now", "other": "x"})
    config = parse_config(config_text(doc, keyset_doc("a", "ns2")), "f.yaml")
    assert set(config.keysets) == {("default", "a"), ("ns2", "a")}
    first = config.keysets[("default", "a")]
    assert first.rotate_request == "now"
    assert first.spec.secret_name == "a-signing"
    assert first.spec.interval == timedelta(seconds=2)


def test_config_reports_every_problem_with_its_place() -> None:
    bad = keyset_doc("b", "Bad.NS", interval="-1s")
    bad["metadata"]["labels"] = {"x": "y"}
    bad["metadata"]["uid"] = "123"
    bad["specs"] = {}
    text = config_text(keyset_doc("a"), bad, keyset_doc("a"), ["not", "a", "map"])
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "f.yaml")
    problems = "\n".join(caught.value.problems)
    assert "f.yaml: document 2: specs: unknown field" in problems
    assert "f.yaml: document 2: metadata.uid: unknown field" in problems
    assert 'document 2: metadata.namespace: "Bad.NS" is not a valid namespace' in problems
    assert 'spec.rotation.interval: "-1s" is not a duration' in problems
    assert "f.yaml: document 3: metadata: default/a is defined twice" in problems
    assert "f.yaml: document 4: must be a JwksKeySet object, not list" in problems
    assert "document 1:" not in problems


# -- the store -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make_state_dir(tmp_path: Path) -> Path:
    return prepare_state_dir(tmp_path / "state")


async def test_store_writes_private_then_public_and_nothing_when_unchanged(tmp_path: Path) -> None:
    state_dir = make_state_dir(tmp_path)
    published: list[dict[str, str]] = []

    async def sink(data: object, next_change: object) -> bool:
        assert private_path(state_dir, "default", "demo").exists()  # private first
        published.append(dict(data))  # type: ignore[call-overload]
        return len(published) == 1

    spec = parse_spec(
        "demo", {"algorithm": "ES256", "rotation": {"interval": "1h", "prePublish": "1m"}}
    )
    store = LocalDirStore(state_dir, "default", "demo", on_public=sink)
    clock = Clock()
    first = await reconcile(spec, store, clock=clock)
    assert first.wrote and first.ready.status
    files = [private_path(state_dir, "default", "demo"), public_path(state_dir, "default", "demo")]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stamps = [path.stat().st_mtime_ns for path in files]
    second = await reconcile(spec, store, clock=clock)
    assert not second.wrote and not second.events
    assert [path.stat().st_mtime_ns for path in files] == stamps  # no write at all
    assert len(published) == 2  # readers are still fed: a restarted server starts empty
    assert published[0] == published[1]
    assert not list(state_dir.glob(".*.tmp"))


async def test_lost_state_file_keeps_serving_the_old_public_keys(tmp_path: Path) -> None:
    state_dir = make_state_dir(tmp_path)
    spec = parse_spec("demo", {"algorithm": "ES256", "rotation": {"retireAfter": "10m"}})
    store = LocalDirStore(state_dir, "default", "demo")
    clock = Clock()
    before = await reconcile(spec, store, clock=clock)
    private_path(state_dir, "default", "demo").unlink()
    after = await reconcile(spec, store, clock=clock)
    assert next(event.reason for event in after.events) == "SecretLost"
    served = json.loads(public_path(state_dir, "default", "demo").read_text())["data"]
    kids = {key["kid"] for key in json.loads(served["jwks.json"])["keys"]}
    assert {before.active_kid, before.next_kid} <= kids
    assert after.active_kid not in (before.active_kid, before.next_kid)


async def test_corrupt_state_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    state_dir = make_state_dir(tmp_path)
    spec = parse_spec("demo", {"algorithm": "ES256"})
    store = LocalDirStore(state_dir, "default", "demo")
    await reconcile(spec, store, clock=Clock())
    path = private_path(state_dir, "default", "demo")
    path.write_text(path.read_text()[:-40])
    damaged = path.read_bytes()
    outcome = await reconcile(spec, store, clock=Clock())
    assert not outcome.ready.status
    assert outcome.ready.reason == "CorruptSecret"
    assert path.read_bytes() == damaged


def test_atomic_write_replaces_whole_files_with_the_given_mode(tmp_path: Path) -> None:
    target = tmp_path / "file.json"
    atomic_write(target, b"one", 0o644)
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]


async def test_write_outcomes(tmp_path: Path) -> None:
    store = LocalDirStore(make_state_dir(tmp_path), "default", "demo")
    assert await store.write_private({"keys.json": "{}"}) is WriteOutcome.CREATED
    assert await store.write_private({"keys.json": "{}"}) is WriteOutcome.UNCHANGED
    assert await store.write_private({"keys.json": "{ }"}) is WriteOutcome.UPDATED


# -- the state directory -------------------------------------------------------------------------


def test_lock_is_exclusive_and_cleans_stale_temp_files(tmp_path: Path) -> None:
    state_dir = make_state_dir(tmp_path)
    stale = state_dir / ".default_demo.keys.json.abc.tmp"
    stale.write_text("half")
    first = StateDirLock(state_dir)
    first.acquire()
    assert not stale.exists()
    with pytest.raises(StateDirError, match=rf"in use by another .*\(pid {os.getpid()}\)"):
        StateDirLock(state_dir).acquire()
    first.release()
    second = StateDirLock(state_dir)
    second.acquire()
    second.release()


def test_state_dir_checks(tmp_path: Path) -> None:
    file_instead = tmp_path / "file"
    file_instead.write_text("")
    with pytest.raises(StateDirError, match="is not a directory"):
        prepare_state_dir(file_instead)
    state_dir = make_state_dir(tmp_path)
    link = state_dir / "default_x.keys.json"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateDirError, match="is not a regular file"):
        prepare_state_dir(state_dir)


# -- the publish directory ----------------------------------------------------------------------


def test_publish_dir_layout_modes_and_guard(tmp_path: Path) -> None:
    publish = PublishDir(tmp_path / "www")
    publish.prepare()
    jwks = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA", "kid": "k1"}]})
    assert publish.write("ns", "demo", {"jwks.json": jwks, "openid-configuration": "{}"})
    assert not publish.write("ns", "demo", {"jwks.json": jwks, "openid-configuration": "{}"})
    folder = tmp_path / "www" / "ns" / "demo"
    assert (folder / "jwks.json").read_text() == jwks
    assert stat.S_IMODE((folder / "jwks.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert publish.write("ns", "demo", {"jwks.json": jwks})  # issuer dropped
    assert not (folder / "openid-configuration").exists()
    leaky = json.dumps(
        {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA", "d": "s", "kid": "k"}]}
    )
    with pytest.raises(UnsafeJwksError):
        publish.write("ns", "demo", {"jwks.json": leaky})
    assert (folder / "jwks.json").read_text() == jwks
    publish.remove("ns", "demo")
    assert not (tmp_path / "www" / "ns").exists()


# -- applying a new config -------------------------------------------------------------------------


async def test_removed_keyset_with_delete_policy_loses_its_files(tmp_path: Path) -> None:
    state_dir = make_state_dir(tmp_path)
    docs = [keyset_doc("keep", interval="1h", pre_publish="1m")]
    gone = keyset_doc("gone", interval="1h", pre_publish="1m", deletionPolicy="Delete")
    config = parse_config(config_text(*docs, gone), "f.yaml")
    options = Options(
        config_path=tmp_path / "f.yaml",
        state_dir=state_dir,
        host="127.0.0.1",
        port=0,
        publish_dir=tmp_path / "www",
        max_age=60,
        default_keyset=None,
    )
    snapshots = SnapshotStore()
    app = Standalone(options, config, snapshots, PublishDir(tmp_path / "www"))
    await app.start()
    try:
        assert snapshots.snapshot.ready
        assert snapshots.get("default", "gone") is not None
        assert (tmp_path / "www" / "default" / "gone" / "jwks.json").exists()
        await app.apply_config(parse_config(config_text(*docs), "f.yaml"))
        assert snapshots.get("default", "gone") is None
        assert not (tmp_path / "www" / "default" / "gone").exists()
        assert not private_path(state_dir, "default", "gone").exists()
        assert private_path(state_dir, "default", "keep").exists()
        assert (tmp_path / "www" / "default" / "keep" / "jwks.json").exists()
    finally:
        await asyncio.wait_for(app.stop(), 10)
