"""``jwks-operator run`` refuses unclear invocations with a message and exit status 2."""

from pathlib import Path

import pytest

from jwks_operator.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "choose the scope: --namespace NS (repeatable) or --all-namespaces"),
        (["run", "-n", "a", "--resync", "soon"], "--resync:"),
        (["run", "-A", "--resync", "0s"], "--resync must be longer than zero"),
        (
            ["run", "-A", "--kubeconfig", "/nonexistent/kubeconfig"],
            "--kubeconfig: kubeconfig file /nonexistent/kubeconfig does not exist",
        ),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "-n", "a", "--all-namespaces"],
        ["run", "-A", "--peering", "p", "--standalone"],
        ["run", "-A", "--verbose", "--quiet"],
    ],
)
def test_conflicting_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "-A", "--liveness", "notaurl"], "is not a URL like http://0.0.0.0:8081/healthz"),
        (["run", "-A", "--liveness", "http://0.0.0.0:99999/healthz"], "port is out of range"),
        (["run", "-A", "--peering", "Bad Name"], "is not a Kubernetes object name"),
        (
            ["run", "-A", "--keyset-selector", "jwks.dev/shard=a b"],
            "argument --keyset-selector: 'jwks.dev/shard=a b': expected ',' between "
            "requirements, found 'b'",
        ),
        (["run", "-A", "--keyset-selector", ""], "the selector is empty"),
        (["run", "-A", "--keyset-selector", "shard>1"], "is not supported"),
    ],
)
def test_bad_flag_values_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("content", ["garbage: [", "apiVersion: v1\nkind: Config\n"])
def test_unusable_credentials_exit_2_instead_of_retrying_forever(
    content: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(content)
    assert main(["run", "-A", "--kubeconfig", str(kubeconfig)]) == 2
    assert "no usable Kubernetes credentials" in capsys.readouterr().err
