"""A throwaway nginx (the Debian binary) with its own prefix, config and logs in a temp dir.

``daemon off; master_process off;`` keeps it one child process of the test, killed at
teardown by its own pid; nothing is written outside the temp dir (``-e`` moves even the
startup error log there).
"""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jwks_operator.server.runner import free_port

_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx() -> tuple[str | None, str]:
    """(path, "") when a usable nginx exists, else (None, why not)."""
    path = shutil.which("nginx") or next((c for c in _CANDIDATES if Path(c).exists()), None)
    if path is None:
        return None, "nginx is not installed (scripts/ensure-tools.sh installs Debian's nginx)"
    built = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10, check=False)
    if "http_auth_request_module" not in built.stderr + built.stdout:
        return None, f"{path} was built without the auth_request module"
    return path, ""


PREAMBLE = """
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""


@contextmanager
def running_nginx(nginx: str, root: Path, locations: str) -> Iterator[int]:
    """Start nginx with ``locations`` inside one server block; yield its port."""
    port = free_port()
    config = root / "nginx.conf"
    config.write_text(PREAMBLE.format(root=root, port=port, locations=locations))
    command = [nginx, "-p", str(root), "-c", str(config), "-e", str(root / "error.log")]
    checked = subprocess.run(
        [*command, "-t"], capture_output=True, text=True, timeout=10, check=False
    )
    assert checked.returncode == 0, f"nginx -t failed:\n{checked.stderr}"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(process, port, root)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


def _wait_listening(process: "subprocess.Popen[bytes]", port: int, root: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (root / "error.log").read_text(errors="replace")
            raise AssertionError(f"nginx exited with {process.returncode}:\n{log[-2000:]}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("nginx did not start listening within 10 s")
