"""The example deployment files under docs/deploy/, read the way their programs read them.

Tests run these files for real (nginx, Mosquitto, the systemd units' commands) after `substitute`
has pointed their production paths and ports at a test's own; every substitution must match, so a
file that changes shape fails the test that uses it instead of silently running something else.
"""

from __future__ import annotations

import configparser
import re
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "docs" / "deploy"
SYSTEMD = DEPLOY / "systemd"
INSTALL_DIR = "/opt/lpr"  # where the units expect the checkout, with its .venv
ENV_FILE_PATH = "/etc/lpr/lpr.env"  # where docs/deployment.md installs docs/deploy/lpr.env


def substitute(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"expected {old!r} in the shipped file; update the test along with the file"
        text = text.replace(old, new)
    return text


def unit(name: str) -> configparser.ConfigParser:
    """A systemd unit file as sections and keys (a key given twice is an error, as it is for ExecStart=)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((SYSTEMD / name).read_text(), source=name)
    return parser


def unit_names() -> list[str]:
    return sorted(p.name for p in SYSTEMD.iterdir())


def exec_start(name: str, instance: str = "", hostname: str = "test") -> list[str]:
    """The unit's ExecStart as an argv for this checkout: %i and %H filled in, the venv's Python or script."""
    line = unit(name)["Service"]["ExecStart"]
    argv = shlex.split(line.replace("%i", instance).replace("%H", hostname))
    program = argv[0].removeprefix(f"{INSTALL_DIR}/.venv/bin/")
    assert program != argv[0], f"{name}: ExecStart should run a program from {INSTALL_DIR}/.venv/bin"
    return [sys.executable if program == "python" else str(Path(sys.executable).parent / program), *argv[1:]]


def web_ports_in_target() -> list[int]:
    """The ports of the lpr-web@PORT instances lpr.target starts."""
    wants = unit("lpr.target")["Unit"]["Wants"].split()
    return sorted(int(m.group(1)) for w in wants if (m := re.fullmatch(r"lpr-web@(\d+)\.service", w)))


def env_file() -> dict[str, str]:
    """docs/deploy/lpr.env as systemd's EnvironmentFile= reads it: KEY=value lines, full-line comments."""
    values = {}
    for number, line in enumerate((DEPLOY / "lpr.env").read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(\S*)", line)
        assert match, f"lpr.env line {number} is not a plain KEY=value: {line!r}"
        assert match.group(1) not in values, f"lpr.env sets {match.group(1)} twice"
        values[match.group(1)] = match.group(2)
    return values


def nginx_site(web_ports: list[int], https_port: int, http_port: int, cert: Path, key: Path) -> str:
    """docs/deploy/nginx/lpr.conf on this machine's ports, upstreams pointing at `web_ports`, with a test certificate."""
    text = (DEPLOY / "nginx" / "lpr.conf").read_text()
    shipped = web_ports_in_target()
    assert len(web_ports) == len(shipped)
    for mine, theirs in zip(web_ports, shipped):
        text = substitute(text, {f"server 127.0.0.1:{theirs};": f"server 127.0.0.1:{mine};"})
    return substitute(text, {
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "listen [::]:443 ssl;\n": "",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;\n": "",
        "/etc/letsencrypt/live/lpr.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/lpr.example.org/privkey.pem": str(key),
    })  # fmt: skip


def mosquitto_conf(directory: Path, tls_port: int, port: int, credentials: Path, cert: Path, key: Path) -> str:
    """docs/deploy/mosquitto/mosquitto.conf with its files under `directory` and `credentials`, on these ports."""
    (directory / "data").mkdir(exist_ok=True)
    text = substitute((DEPLOY / "mosquitto" / "mosquitto.conf").read_text(), {
        "/run/mosquitto/mosquitto.pid": str(directory / "mosquitto.pid"),
        "/etc/mosquitto/lpr/": f"{credentials}/",
        "listener 8883\n": f"listener {tls_port} 127.0.0.1\n",
        "/etc/mosquitto/certs/fullchain.pem": str(cert),
        "/etc/mosquitto/certs/privkey.pem": str(key),
        "listener 1883 127.0.0.1": f"listener {port} 127.0.0.1",
        "/var/lib/mosquitto/": f"{directory / 'data'}/",
        "/var/log/mosquitto/mosquitto.log": str(directory / "mosquitto.log"),
    })  # fmt: skip
    return text
