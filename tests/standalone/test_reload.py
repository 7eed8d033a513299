"""Config reload without a restart: on file change and on SIGHUP; a bad config is refused."""

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.standalone.support import (
    StandaloneProcess,
    http_get,
    keyset_doc,
    read_state,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.timeout(90)


def slow(name: str, namespace: str = "default", **options: Any) -> dict[str, Any]:
    """A keyset that does not rotate during the test."""
    return keyset_doc(
        name, namespace, interval="1h", pre_publish="1m", retire_after="1m", **options
    )


def test_file_change_adds_changes_and_removes_keysets(tmp_path: Path) -> None:
    config = write_config(tmp_path / "keysets.yaml", slow("one"))
    process = StandaloneProcess(tmp_path, config).started()
    try:
        one_kids = [key["kid"] for key in process.jwks("default", "one")["keys"]]

        # Added: a second keyset, in another namespace, with its own algorithm.
        write_config(
            config,
            slow("one"),
            slow("two", "team-b", algorithm="EdDSA"),
        )
        wait_until(
            lambda: http_get(process.jwks_url("team-b", "two"))[0] == 200,
            what="the added keyset to be served",
        )
        assert [key["alg"] for key in process.jwks("team-b", "two")["keys"]] == ["EdDSA"] * 2
        assert "team-b/two: added to the config" in process.output()

        # Changed: a new algorithm replaces the next key at once (it never signed).
        write_config(
            config,
            slow("one", algorithm="ES384"),
            slow("two", "team-b", algorithm="EdDSA"),
        )
        process.wait_for_log(r"default/one NextKeyReplaced: next key \S+ \(ES256\) never signed")
        algs = [key["alg"] for key in process.jwks("default", "one")["keys"]]
        assert algs == ["ES256", "ES384"]  # the active key keeps signing until rotation
        assert process.jwks("default", "one")["keys"][0]["kid"] == one_kids[0]

        # Removed: no longer served; its keys stay on disk (deletionPolicy Retain).
        write_config(config, slow("one", algorithm="ES384"))
        process.wait_for_log(r"team-b/two: removed from the config and no longer served")
        assert http_get(process.jwks_url("team-b", "two"))[0] == 404
        assert read_state(process.state_dir, "team-b", "two").active is not None
    finally:
        assert process.stop() == 0


def test_invalid_new_config_is_refused_and_the_old_one_keeps_running(tmp_path: Path) -> None:
    doc = keyset_doc("demo", interval="2s", pre_publish="1s", retire_after="1s")
    config = write_config(tmp_path / "keysets.yaml", doc)
    process = StandaloneProcess(tmp_path, config).started()
    try:
        broken = keyset_doc("demo", interval="2s", pre_publish="5s")
        write_config(config, broken)
        text = process.wait_for_log(r"config .* refused \(file changed\); still running")
        assert (
            "spec.rotation.prePublish: prePublish (5s) must be shorter than interval (2s)" in text
        )
        # The old config goes on: keys keep rotating on the old schedule and are served.
        before = text.count(" Rotated: ")
        process.wait_for_log(" Rotated: ", count=before + 1, timeout=15)
        assert process.running
        assert process.jwks()["keys"]
        # Fixing the file is picked up.
        write_config(config, keyset_doc("demo", interval="1h", pre_publish="1m"))
        process.wait_for_log(r"reloaded \(file changed\)")
    finally:
        assert process.stop() == 0


def test_sighup_reloads_even_when_the_file_looks_unchanged(tmp_path: Path) -> None:
    """SIGHUP re-reads the file; here it is edited in place with its old mtime kept, which
    the poller cannot see. The edit is a ``jwks.dev/rotate`` request: rotate now."""
    config = write_config(
        tmp_path / "keysets.yaml",
        slow("demo", annotations={"jwks.dev/rotate": "r1"}),
    )
    process = StandaloneProcess(tmp_path, config).started()
    try:
        before = process.jwks()["keys"]
        info = config.stat()
        content = config.read_text().replace("r1", "r2")
        with config.open("r+") as handle:  # same inode, same size
            handle.write(content)
        os.utime(config, ns=(info.st_atime_ns, info.st_mtime_ns))
        process.signal(signal.SIGHUP)
        text = process.wait_for_log(r"reloaded \(SIGHUP\)")
        process.wait_for_log(r"default/demo RotatedEarly: rotate request: \S+ is now active")
        after = process.jwks()["keys"]
        assert after[0]["kid"] == before[1]["kid"]  # the published next key now signs
        assert before[0]["kid"] in {key["kid"] for key in after}  # and the old one stays
        assert "(file changed)" not in text
    finally:
        assert process.stop() == 0
