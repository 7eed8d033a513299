"""What standalone refuses to start with: each refusal is exit 2 and names the problem."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.standalone.support import (
    StandaloneProcess,
    cli_env,
    keyset_doc,
    run_cli,
    write_config,
)

pytestmark = pytest.mark.timeout(60)


def standalone(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("standalone", "--port", "0", *args, cwd=cwd, timeout=30)


def test_second_instance_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "keysets.yaml", keyset_doc(interval="1h", pre_publish="1m"))
    first = StandaloneProcess(tmp_path, config)
    try:
        first.started()
        before = first.state_dir.joinpath("default_demo.keys.json").read_bytes()
        second = standalone(
            "--config", str(config), "--state-dir", str(first.state_dir), cwd=tmp_path
        )
        assert second.returncode == 2
        assert "is in use by another jwks-operator standalone" in second.stderr
        assert f"(pid {first.popen.pid})" in second.stderr  # type: ignore[union-attr]
        # The refused instance touched nothing, and the first one still serves.
        assert first.state_dir.joinpath("default_demo.keys.json").read_bytes() == before
        assert first.jwks()["keys"]
    finally:
        assert first.stop() == 0
    # Once the holder is gone (even if it had been killed), the lock is free again.
    again = StandaloneProcess(tmp_path, config).started()
    again.kill()
    third = StandaloneProcess(tmp_path, config).started()
    assert third.stop() == 0


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777])
def test_state_dir_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    config = write_config(tmp_path / "keysets.yaml", keyset_doc())
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, mode)
    result = standalone("--config", str(config), "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 2
    assert "is accessible by group or others" in result.stderr
    assert f"chmod 700 {state}" in result.stderr
    assert list(state.iterdir()) == []  # no key was generated into it


def test_state_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "keysets.yaml", keyset_doc(interval="1h", pre_publish="1m"))
    process = StandaloneProcess(tmp_path, config).started()
    assert process.stop() == 0
    keys = process.state_dir / "default_demo.keys.json"
    os.chmod(keys, 0o644)
    result = standalone(
        "--config", str(config), "--state-dir", str(process.state_dir), cwd=tmp_path
    )
    assert result.returncode == 2
    assert f"state file {keys} is accessible by group or others (mode 0644)" in result.stderr


def test_state_dir_is_created_private(tmp_path: Path) -> None:
    config = write_config(tmp_path / "keysets.yaml", keyset_doc(interval="1h", pre_publish="1m"))
    process = StandaloneProcess(tmp_path, config, state_dir=tmp_path / "a" / "b" / "state")
    process.started()
    assert process.stop() == 0
    assert (process.state_dir.stat().st_mode & 0o777) == 0o700


def test_bad_config_is_refused_naming_each_field(tmp_path: Path) -> None:
    good = keyset_doc("good")
    bad = keyset_doc("bad", interval="soon", algorithm="HS256")
    bad["spec"]["rotation"]["prePublsh"] = "1s"
    config = write_config(tmp_path / "keysets.yaml", good, bad)
    state = tmp_path / "state"
    result = standalone("--config", str(config), "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 2
    errors = result.stderr
    assert 'document 2 (default/bad): spec.rotation.interval: "soon" is not a duration' in errors
    assert "document 2 (default/bad): spec.algorithm: " in errors
    assert "document 2 (default/bad): spec.rotation.prePublsh: unknown field" in errors
    assert "document 1" not in errors
    assert "nothing was started" in errors
    assert not state.exists()  # refused before anything was created


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("kind: JwksKeySet\nmetadata: {name: x}\n", "apiVersion: must be jwks.dev/v1alpha1"),
        ("apiVersion: jwks.dev/v1alpha1\nkind: Secret\nmetadata: {name: x}\n", "kind: must be"),
        (
            "apiVersion: jwks.dev/v1alpha1\nkind: JwksKeySet\nmetadata: {name: Bad_Name}\n",
            "metadata.name: ",
        ),
        ("a: [1,\n", "not valid YAML (line 2"),
        ("", "holds no JwksKeySet document"),
    ],
)
def test_malformed_config_documents(tmp_path: Path, content: str, expected: str) -> None:
    config = tmp_path / "keysets.yaml"
    config.write_text(content)
    result = standalone("--config", str(config), "--state-dir", str(tmp_path / "s"), cwd=tmp_path)
    assert result.returncode == 2
    assert expected in result.stderr


def test_missing_config_and_unknown_default_keyset(tmp_path: Path) -> None:
    missing = standalone("--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "cannot read the config file" in missing.stderr
    config = write_config(tmp_path / "keysets.yaml", keyset_doc())
    unknown = standalone("--config", str(config), "--default-keyset", "other/x", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "--default-keyset other/x is not defined in the config" in unknown.stderr
    bad_port = standalone("--config", str(config), "--port", "70000", cwd=tmp_path)
    assert bad_port.returncode == 2


def test_busy_port_fails_before_any_key_is_written(tmp_path: Path) -> None:
    config = write_config(tmp_path / "keysets.yaml", keyset_doc())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "jwks_operator",
                "standalone",
                "--config",
                str(config),
                "--state-dir",
                str(tmp_path / "state"),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=cli_env(),
            check=False,
        )
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "choose another port with --port" in result.stderr
    assert not list((tmp_path / "state").glob("*.keys.json"))
