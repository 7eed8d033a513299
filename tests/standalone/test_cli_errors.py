"""Bad input to sign and standalone gives a message and exit 2, never a traceback."""

from pathlib import Path

import pytest

from jwks_operator.cli import main


def test_sign_kube_with_a_malformed_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("garbage: [")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert main(["sign", "--keyset", "ns/name", "--kube"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the Kubernetes configuration" in err
    assert "Traceback" not in err


def test_standalone_state_dir_under_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = Path(__file__).parents[2] / "examples" / "standalone.yaml"
    code = main(
        [
            "standalone",
            "--config",
            str(config),
            "--state-dir",
            str(blocker / "state"),
            "--port",
            "0",
        ]
    )
    assert code == 2
    assert "state directory" in capsys.readouterr().err
