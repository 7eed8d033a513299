"""Every command speaks one dialect: the same logging flags and line format, the same
kubeconfig flags and the same message for a missing kubeconfig file, exit 2 for each."""

import argparse
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from jwks_operator import logs
from jwks_operator.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = ("run", "serve", "standalone")
CLUSTER = (["run", "-A"], ["serve"], ["sign", "--keyset", "default/auth", "--kube"])


def _subcommand(name: str) -> argparse.ArgumentParser:
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    choices = subparsers._group_actions[0].choices
    assert isinstance(choices, dict)
    parser = choices[name]
    assert isinstance(parser, argparse.ArgumentParser)
    return parser


def _options(name: str) -> dict[str, argparse.Action]:
    return {flag: action for action in _subcommand(name)._actions for flag in action.option_strings}


@pytest.mark.parametrize("command", LONG_RUNNING)
def test_logging_flags_are_the_same_on_every_long_running_command(command: str) -> None:
    options = _options(command)
    assert list(options["--log-level"].choices or []) == list(logs.LEVELS)
    assert set(options["--log-format"].choices or []) >= set(logs.FORMATS)
    assert options["--log-level"].default == "info"
    assert options["--log-format"].default == "plain"


@pytest.mark.parametrize("command", ["run", "serve", "sign"])
def test_kubeconfig_flags_are_the_same_on_every_cluster_command(command: str) -> None:
    options = _options(command)
    assert {"--kubeconfig", "--context"} <= set(options)


@pytest.mark.parametrize("argv", CLUSTER, ids=lambda argv: argv[0])
def test_a_missing_kubeconfig_flag_gets_one_message(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    assert main([*argv, "--kubeconfig", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"error: --kubeconfig: kubeconfig file {missing} does not exist" in err


@pytest.mark.parametrize("argv", CLUSTER, ids=lambda argv: argv[0])
def test_a_missing_kubeconfig_variable_gets_the_same_message(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "gone"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    assert main(argv) == 2
    assert f"error: KUBECONFIG: kubeconfig file {missing} does not exist" in capsys.readouterr().err


def test_kubeconfig_flags_without_kube_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sign", "--keyset", "default/a", "--state-dir", str(tmp_path), "--kubeconfig", "x"]
    assert main(argv) == 2
    assert "--kubeconfig only goes with --kube" in capsys.readouterr().err


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "jwks_operator.standalone", logging.WARNING, __file__, 1, message, (), None
    )
    record.created = 1796157327.123456  # 2026-12-01T20:35:27.123Z
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_documented_fields() -> None:
    line = logs.JsonFormatter().format(
        _record(
            "default/demo Rotated: k2 is now active", **logs.keyset_extra("default/demo", "Rotated")
        )
    )
    assert json.loads(line) == {
        "timestamp": "2026-12-01T20:35:27.123Z",
        "level": "WARNING",
        "logger": "jwks_operator.standalone",
        "keyset": "default/demo",
        "reason": "Rotated",
        "message": "default/demo Rotated: k2 is now active",
    }
    kopf_line = json.loads(
        logs.JsonFormatter().format(
            _record(
                "Reconciled (trigger: x)",
                k8s_ref={"kind": "JwksKeySet", "namespace": "ns", "name": "auth"},
            )
        )
    )
    assert kopf_line["keyset"] == "ns/auth" and "reason" not in kopf_line
    secret_line = json.loads(
        logs.JsonFormatter().format(
            _record("x", k8s_ref={"kind": "Secret", "namespace": "ns", "name": "auth-signing"})
        )
    )
    assert secret_line["object"] == "Secret ns/auth-signing" and "keyset" not in secret_line
    documented = (ROOT / "docs" / "logging.md").read_text()
    for field in ("timestamp", "level", "logger", "keyset", "object", "reason", "message", "error"):
        assert f"`{field}`" in documented, field


def test_plain_lines_keep_kopfs_object_prefix() -> None:
    plain = logs.PlainFormatter()
    assert (
        plain.format(
            _record(
                "Reconciled (trigger: x)",
                k8s_ref={"kind": "JwksKeySet", "namespace": "ns", "name": "auth"},
            )
        )
        == "2026-12-01T20:35:27.123Z WARNING [ns/auth] Reconciled (trigger: x)"
    )
    assert plain.format(_record("listening")) == "2026-12-01T20:35:27.123Z WARNING listening"


def test_configure_routes_every_logger_through_one_handler() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure("warning", "json", stream)
        logging.getLogger("kopf.objects").info("hidden")
        logging.getLogger("jwks_operator.serve").error("shown")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    (line,) = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "shown"


@pytest.mark.parametrize(
    ("flag", "level"), [("-v", "debug"), ("--debug", "debug"), ("-q", "warning")]
)
def test_old_run_verbosity_flags_still_work_and_say_what_replaces_them(
    flag: str, level: str, tmp_path: Path
) -> None:
    # run stops at the missing kubeconfig; the warnings come first.
    result = subprocess.run(
        [sys.executable, "-m", "jwks_operator", "run", "-A", flag, "--log-format", "full"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"KUBECONFIG": str(tmp_path / "none"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=ROOT / "operator",
        check=False,
    )
    assert result.returncode == 2
    assert f"-v, --debug and -q are deprecated; use --log-level {level}" in result.stderr
    assert "--log-format full is deprecated; it now means plain" in result.stderr
    assert "KUBECONFIG: kubeconfig file" in result.stderr


def _two_contexts(path: Path) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n"
        "clusters:\n"
        "- {name: a, cluster: {server: 'http://127.0.0.1:1'}}\n"
        "- {name: b, cluster: {server: 'http://127.0.0.1:2'}}\n"
        "users:\n- {name: a, user: {token: token-a}}\n- {name: b, user: {token: token-b}}\n"
        "contexts:\n- {name: a, context: {cluster: a, user: a}}\n- {name: b, context: {cluster: b, user: b}}\n"
    )
    return path


def test_run_context_picks_the_named_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jwks_operator.kube.config import load_credentials
    from jwks_operator.operator.credentials import connection_info
    from jwks_operator.operator.settings import operator_settings

    monkeypatch.setenv("KUBECONFIG", str(_two_contexts(tmp_path / "config")))
    info = connection_info(load_credentials(context="b"), operator_settings())
    assert info.server == "http://127.0.0.1:2"
    assert info.token == "token-b"


def test_run_with_an_unknown_context_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _two_contexts(tmp_path / "config")
    assert main(["run", "-A", "--kubeconfig", str(config), "--context", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no usable Kubernetes credentials" in err and "nope" in err
