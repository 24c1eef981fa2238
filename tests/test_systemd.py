"""The shipped systemd unit (issue #7): systemd accepts it, and it keeps its promises."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import ServerSettings

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "contrib" / "systemd" / "llm-proxy.service"


def directives() -> dict[str, list[str]]:
    """``[Section]Key`` -> values, in order (keys may repeat in a unit file)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"[{section}]{key.strip()}", []).append(value.strip())
    return out


def service(key: str) -> str:
    values = directives().get(f"[Service]{key}")
    assert values, f"{key}= missing from [Service]"
    return values[-1]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian package: systemd)")
    text = UNIT.read_text(encoding="utf-8")
    # The venv path does not exist here; any existing executable will do.
    text, n = re.subn(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", text)
    assert n == 1
    unit = tmp_path / "llm-proxy.service"
    unit.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [exe, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # Unknown or misspelt directives are only warnings (exit 0): fail on any output
    # that names the unit.
    problems = [line for line in proc.stderr.splitlines() if "llm-proxy.service" in line]
    assert proc.returncode == 0, proc.stderr
    assert problems == []


def test_unit_is_sandboxed():
    assert service("NoNewPrivileges") == "yes"
    assert service("ProtectSystem") == "strict"
    assert service("PrivateTmp") == "yes"
    assert service("ProtectHome") == "yes"
    assert service("User") == "llm-proxy"
    # The only writable place is the state directory (database, WAL, secret).
    assert service("StateDirectory") == "llm-proxy"
    assert service("ReadWritePaths") == "/var/lib/llm-proxy"
    assert service("CapabilityBoundingSet") == ""


def test_unit_runs_the_cli_with_the_etc_config():
    exec_start = service("ExecStart").split()
    assert Path(exec_start[0]).name == "llm-proxy"
    assert exec_start[1:] == ["serve", "--config", "/etc/llm-proxy/config.toml"]
    assert service("EnvironmentFile").lstrip("-") == "/etc/llm-proxy/env"
    assert service("Restart") == "on-failure"


def test_stop_timeout_outlasts_the_graceful_period():
    graceful = ServerSettings().graceful_timeout
    assert graceful == 30.0
    stop = service("TimeoutStopSec")
    assert float(stop.rstrip("s")) > graceful
    assert service("KillSignal") == "SIGTERM"


def test_unit_parses_as_ini():
    # A cheap guard against a broken edit where systemd-analyze is not available.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    assert parser["Install"]["WantedBy"] == "multi-user.target"
