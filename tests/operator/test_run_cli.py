"""``jwks-operator run`` refuses unclear invocations with a message and exit status 2."""

import pytest

from jwks_operator.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "choose the scope: --namespace NS (repeatable) or --all-namespaces"),
        (["run", "-n", "a", "--resync", "soon"], "--resync:"),
        (["run", "-A", "--resync", "0s"], "--resync must be longer than zero"),
        (["run", "-A", "--kubeconfig", "/nonexistent/kubeconfig"], "no such file"),
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
