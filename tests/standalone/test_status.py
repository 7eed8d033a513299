"""``jwks-operator status`` and the checks ``sign --state-dir`` shares with standalone: a
state directory is read only when private, the status never shows key material, and state
that nobody rotates any more is called overdue (status exit 1, a warning from sign)."""

import asyncio
import json
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jwks_operator.core.spec import parse_spec
from jwks_operator.reconcile import reconcile
from jwks_operator.standalone.status import keyset_status, read_status, status_document
from jwks_operator.store.localdir import LocalDirStore, private_path, public_path
from tests.standalone.support import (
    StandaloneProcess,
    http_get,
    keyset_doc,
    leaks,
    private_values,
    read_state,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.timeout(60)


def make_state(state_dir: Path, name: str, interval: str, written: datetime) -> None:
    """A reconciled ES256 keyset, written by the real store as if at ``written``."""
    state_dir.mkdir(mode=0o700, exist_ok=True)
    spec = parse_spec(
        name,
        {
            "algorithm": "ES256",
            "rotation": {"interval": interval, "prePublish": "10s", "retireAfter": "10s"},
        },
    )
    store = LocalDirStore(state_dir, "default", name)
    asyncio.run(reconcile(spec, store, clock=lambda: written))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    now = datetime.now(UTC)
    make_state(directory, "fresh", "1h", now)
    make_state(directory, "stale", "30s", now - timedelta(hours=1))
    return directory


def test_status_table_and_json_name_kids_and_times_never_keys(state_dir: Path) -> None:
    fresh, stale = read_state(state_dir, name="fresh"), read_state(state_dir, name="stale")
    secrets = private_values(fresh) | private_values(stale)
    table = run_cli("status", "--state-dir", str(state_dir))
    assert table.returncode == 1  # one keyset is overdue
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "KEYSET",
        "ACTIVE",
        "KID",
        "NEXT",
        "KID",
        "NEXT",
        "CHANGE",
        "LAST",
        "CHANGE",
    ]
    assert [row.split()[0] for row in rows] == ["default/fresh", "default/stale"]
    assert fresh.active and fresh.next and fresh.active.kid in rows[0] and fresh.next.kid in rows[0]
    assert "(overdue)" in rows[1] and "(overdue)" not in rows[0]
    assert not leaks(table.stdout + table.stderr, secrets)

    document = json.loads(run_cli("status", "--state-dir", str(state_dir), "-o", "json").stdout)
    by_name = {entry["keyset"]: entry for entry in document["keysets"]}
    assert by_name["default/fresh"]["activeKid"] == fresh.active.kid
    assert by_name["default/fresh"]["overdue"] is False
    assert by_name["default/stale"]["overdue"] is True
    assert {key["state"] for key in by_name["default/fresh"]["keys"]} == {"active", "next"}
    assert by_name["default/fresh"]["lastChange"]["what"].split()[0] in {
        "created",
        "published",
        "activated",
    }
    assert not leaks(json.dumps(document), secrets)


def test_status_is_a_function_of_the_files_and_the_time(state_dir: Path) -> None:
    keys = private_path(state_dir, "default", "fresh").read_bytes()
    public = public_path(state_dir, "default", "fresh").read_bytes()
    now = datetime.now(UTC)
    status = keyset_status("default/fresh", keys, public, now)
    assert status.next_change is not None and not status.overdue
    later = keyset_status("default/fresh", keys, public, status.next_change + timedelta(seconds=1))
    assert later.overdue
    assert keyset_status("default/x", b"{not json", None, now).problem
    assert status_document(read_status(state_dir, now))["keysets"][0]["keyset"] == "default/fresh"


def test_status_exits_0_when_every_keyset_is_on_schedule(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    make_state(directory, "fresh", "1h", datetime.now(UTC))
    assert run_cli("status", "--state-dir", str(directory)).returncode == 0


@pytest.mark.parametrize("command", ["status", "sign"])
def test_a_directory_others_can_read_is_refused_as_standalone_refuses_it(
    state_dir: Path, command: str
) -> None:
    os.chmod(state_dir, 0o755)  # noqa: S103 (the refusal under test)
    args = ["--keyset", "default/fresh"] if command == "sign" else []
    result = run_cli(command, *args, "--state-dir", str(state_dir))
    assert result.returncode == 2
    assert "is accessible by group or others (mode 0755)" in result.stderr
    assert result.stdout == ""
    os.chmod(state_dir, 0o700)
    os.chmod(private_path(state_dir, "default", "fresh"), 0o644)
    result = run_cli(command, *args, "--state-dir", str(state_dir))
    assert result.returncode == 2 and "chmod 600" in result.stderr


def test_sign_warns_when_the_state_is_overdue(state_dir: Path) -> None:
    stale = run_cli("sign", "--keyset", "default/stale", "--state-dir", str(state_dir))
    assert stale.returncode == 0 and stale.stdout.count(".") == 2  # still signs: a token
    assert (
        "jwks-operator sign: warning: default/stale: its next scheduled change was due"
        in stale.stderr
    )
    assert "may be past its rotation interval" in stale.stderr
    fresh = run_cli("sign", "--keyset", "default/fresh", "--state-dir", str(state_dir))
    assert fresh.returncode == 0 and fresh.stderr == ""


def test_the_status_route_shows_where_a_running_keyset_stands(tmp_path: Path) -> None:
    """``GET /{ns}/{name}/status`` of a running standalone: what ``status`` prints, plus the
    readiness and the last event; live (``no-store``), read-only, never key material."""
    config = write_config(
        tmp_path / "keysets.yaml", keyset_doc(interval="1h", pre_publish="1s", retire_after="1h")
    )
    process = StandaloneProcess(tmp_path, config).started()
    try:
        status, headers, body = http_get(process.url("/default/demo/status"))
        assert status == 200, body
        assert headers["Cache-Control"] == "no-store"
        document = json.loads(body)
        kids = [key["kid"] for key in process.jwks()["keys"]]
        assert (document["activeKid"], document["nextKid"]) == tuple(kids)
        assert document["keyset"] == "default/demo"
        assert [key["state"] for key in document["keys"]] == ["active", "next"]
        assert document["ready"]["status"] is True
        assert document["lastEvent"]["reason"] in ("Bootstrapped", "NextKeyCreated")
        assert document["overdue"] is False and document["nextChange"]
        assert leaks(body.decode(), private_values(read_state(process.state_dir))) == []
        missing, _, answer = http_get(process.url("/default/nope/status"))
        assert missing == 404 and json.loads(answer)["error"] == "not_found"
        request = urllib.request.Request(process.url("/default/demo/status"), method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
    finally:
        process.stop()
