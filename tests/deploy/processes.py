"""nginx and Mosquitto running the shipped configurations (docs/deploy/) on a test's ports, with a throwaway certificate."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from pathlib import Path

from tests.mqtt.conftest import Mosquitto
from tests.support import free_port, wait_until

from .shipped import mosquitto_conf

RUN_AS = f"user {getpass.getuser()}"  # as root both would switch to a user who cannot read the test's files


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key; clients trust the certificate itself."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class ShippedMosquitto(Mosquitto):
    """docs/deploy/mosquitto/mosquitto.conf: camera listener with TLS on `tls_port`, bridge listener on `port`."""

    def __init__(self, directory: Path, credentials: Path, cert: Path, key: Path):
        self.directory, self.credentials, self.cert, self.key = directory, credentials, cert, key
        self.start_on_free_ports()

    def configure(self) -> None:
        self.port, self.tls_port = free_port(), free_port()
        self.conf = self.directory / "mosquitto.conf"
        text = mosquitto_conf(self.directory, self.tls_port, self.port, self.credentials, self.cert, self.key)
        self.conf.write_text(f"{text}\n{RUN_AS}\n")
        self.log_path = self.directory / "mosquitto.log"
        if self.log_path.exists():  # a try before this one: its "Address already in use" is not this one's
            self.log_path.unlink()


class Nginx:
    """nginx serving one site file, in the foreground, with everything it writes under `directory`."""

    def __init__(self, directory: Path, site: str, port: int):
        self.port = port
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "site.conf").write_text(site)
        conf = self.dir / "nginx.conf"
        conf.write_text(_main_conf(self.dir))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        assert Path(binary).exists(), "nginx is not installed: scripts/test installs it (ensure_nginx)"
        command = [binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(conf)]
        checked = subprocess.run([*command, "-t", "-q"], capture_output=True, text=True)
        assert checked.returncode == 0, f"nginx refused the configuration:\n{checked.stderr}"
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._listening, 10, what=f"nginx on {port}")

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("nginx exited:\n" + self.error_log())
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _main_conf(directory: Path) -> str:
    """The main-context settings Debian's /etc/nginx/nginx.conf would give, kept inside `directory`."""
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{RUN_AS + ";" if getpass.getuser() == "root" else ""}
worker_processes 1;
daemon off;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} notice;
events {{
    worker_connections 1024;
}}
http {{
    access_log {directory / "access.log"};
{temp}
    include {directory / "site.conf"};
}}
"""
