"""A real nginx (Debian's package, `make system-packages`) in front of API replicas on loopback.

Its config is written into the test's directory and includes deploy/nginx/upstream.conf and
proxy.conf, so the tests prove the settings compose.yaml ships; nothing outside that directory is
touched (prefix, pid, logs and temp paths all live in it).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from caracal.embedded import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
CONFIG = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_x_request_id $caracal_request_id {{
        default $http_x_request_id;
        ""      $request_id;
    }}
    upstream caracal_api {{
{servers}
        include {deploy}/upstream.conf;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 2m;
        location / {{
            proxy_pass http://caracal_api;
            include {deploy}/proxy.conf;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/sbin/nginx") if Path(path).exists()), None
    )
    assert found, "nginx is not installed: `make system-packages` installs Debian's package"
    return found


@dataclass
class Nginx:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_nginx(directory: Path, upstream_ports: list[int]) -> Nginx:
    """nginx on a free loopback port, proxying to the API replicas on `upstream_ports`; waits until
    it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    # max_fails=0 as in deploy/nginx/nginx.conf (why: there)
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=0;" for p in upstream_ports)
    conf = directory / "nginx.conf"
    conf.write_text(CONFIG.format(dir=directory, servers=servers, deploy=DEPLOY, port=port))
    command = [nginx_binary(), "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*command, "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    nginx = Nginx(directory, port, process)
    _wait_answering(nginx)
    return nginx


def _wait_answering(nginx: Nginx, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert nginx.process.poll() is None, f"nginx exited:\n{nginx.error_log()}"
        try:
            with urllib.request.urlopen(f"{nginx.url}/health", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # nginx answered (the upstream's status does not matter here)
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise AssertionError(f"nginx not answering in {timeout}s:\n{nginx.error_log()}")
