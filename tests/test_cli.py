"""The ``llm-proxy`` command, run as a real subprocess (``python -m gateway``)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

PROVIDER_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY", "GROK_API_KEY")
ROOT = Path(__file__).resolve().parent.parent

GOOD_CONFIG = """\
[database]
path = "data/gw.db"

[providers.openai]
enabled = true

[providers.gemini]
enabled = false

[providers.deepseek]
enabled = false
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARS}
    env.pop("LLM_PROXY_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env=clean_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text(GOOD_CONFIG)
    return tmp_path


def create_key(workdir: Path, name: str) -> str:
    result = run(workdir, "keys", "create", name)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


# -- keys -----------------------------------------------------------------------------


def test_keys_create_prints_key_alone_on_last_line(workdir):
    result = run(workdir, "keys", "create", "my-app")
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("sk-lp-")
    assert last == last.strip()
    assert " " not in last
    assert len(last) > 40


def test_keys_create_stores_only_the_hash(workdir):
    key = create_key(workdir, "my-app")
    db_path = workdir / "data" / "gw.db"
    con = sqlite3.connect(db_path)
    try:
        ((stored_hash,),) = con.execute(
            "SELECT key_hash FROM client_keys WHERE name = 'my-app'"
        ).fetchall()
    finally:
        con.close()
    assert stored_hash == hashlib.sha256(key.encode()).hexdigest()
    files = list((workdir / "data").iterdir())
    assert db_path in files
    for path in files:  # the database and any -wal / -shm beside it
        data = path.read_bytes()
        assert key.encode() not in data
        assert key[10:].encode() not in data  # not even the part after the prefix


def test_keys_list_shows_name_but_never_the_key(workdir):
    key = create_key(workdir, "my-app")
    result = run(workdir, "keys", "list")
    assert result.returncode == 0, result.stderr
    assert "my-app" in result.stdout
    assert "active" in result.stdout
    assert key not in result.stdout
    assert key[10:] not in result.stdout


def test_keys_revoke_marks_key_revoked_in_list(workdir):
    create_key(workdir, "my-app")
    create_key(workdir, "other")
    result = run(workdir, "keys", "revoke", "my-app")
    assert result.returncode == 0, result.stderr
    listing = {
        line.split("\t")[0]: line.split("\t")[-1]
        for line in run(workdir, "keys", "list").stdout.splitlines()
    }
    assert listing == {"my-app": "revoked", "other": "active"}


def test_keys_revoke_fails_for_unknown_name(workdir):
    result = run(workdir, "keys", "revoke", "nobody")
    assert result.returncode != 0
    assert "nobody" in result.stderr
    no_traceback(result)


def test_keys_create_fails_cleanly_on_duplicate_name(workdir):
    create_key(workdir, "my-app")
    result = run(workdir, "keys", "create", "my-app")
    assert result.returncode != 0
    assert "my-app" in result.stderr
    assert "already exists" in result.stderr
    assert "sk-lp-" not in result.stdout
    no_traceback(result)


# -- check-config ---------------------------------------------------------------------


def test_check_config_exits_zero_on_good_config(workdir):
    result = run(workdir, "check-config", env=clean_env(OPENAI_API_KEY="sk-test"))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert "openai" in result.stdout
    assert result.stderr == ""


def test_check_config_warns_naming_env_var_when_key_missing(workdir):
    result = run(workdir, "check-config")
    assert result.returncode == 0
    assert "OPENAI_API_KEY" in result.stderr
    assert "providers enabled: none" in result.stdout


def test_check_config_fails_with_reason_on_bad_config(workdir):
    (workdir / "config.toml").write_text("[server]\nprot = 8080\n")
    result = run(workdir, "check-config")
    assert result.returncode != 0
    assert "server.prot: unknown key" in result.stderr
    assert 'did you mean "port"?' in result.stderr
    no_traceback(result)


def test_check_config_fails_on_invalid_toml(workdir):
    (workdir / "config.toml").write_text("[server\n")
    result = run(workdir, "check-config")
    assert result.returncode != 0
    assert "not valid TOML" in result.stderr
    no_traceback(result)


def test_check_config_fails_when_named_config_file_is_missing(workdir):
    result = run(workdir, "--config", "missing.toml", "check-config")
    assert result.returncode != 0
    assert "missing.toml" in result.stderr
    no_traceback(result)


def test_check_config_validates_shipped_config():
    result = run(ROOT, "check-config", env=clean_env(**{v: "x" for v in PROVIDER_VARS}))
    assert result.returncode == 0, result.stderr
    assert "providers enabled: deepseek, gemini, openai" in result.stdout
    assert result.stderr == ""


# -- where the config comes from ------------------------------------------------------


def test_cli_reads_config_given_with_config_option(tmp_path):
    (tmp_path / "other.toml").write_text("[server]\nprot = 1\n")
    (tmp_path / "config.toml").write_text(GOOD_CONFIG)
    before = run(tmp_path, "check-config")
    after = run(tmp_path, "--config", "other.toml", "check-config")
    after_sub = run(tmp_path, "check-config", "--config", "other.toml")
    assert before.returncode == 0
    assert after.returncode != 0
    assert "server.prot" in after.stderr
    assert after_sub.returncode != 0
    assert "server.prot" in after_sub.stderr


def test_cli_reads_config_named_by_environment(tmp_path):
    conf = tmp_path / "etc" / "gw.toml"
    conf.parent.mkdir()
    conf.write_text(GOOD_CONFIG)
    result = run(
        tmp_path,
        "keys",
        "create",
        "env-app",
        env=clean_env(LLM_PROXY_CONFIG=str(conf)),
    )
    assert result.returncode == 0, result.stderr
    # The database path in it resolves against the config's folder.
    assert (tmp_path / "etc" / "data" / "gw.db").exists()
    assert not (tmp_path / "data").exists()


def test_cli_config_option_wins_over_environment(tmp_path):
    (tmp_path / "bad.toml").write_text("[server]\nprot = 1\n")
    (tmp_path / "good.toml").write_text(GOOD_CONFIG)
    result = run(
        tmp_path,
        "--config",
        "good.toml",
        "check-config",
        env=clean_env(LLM_PROXY_CONFIG=str(tmp_path / "bad.toml")),
    )
    assert result.returncode == 0, result.stderr


def test_keys_accept_config_option_after_subcommand(tmp_path):
    conf = tmp_path / "elsewhere" / "config.toml"
    conf.parent.mkdir()
    conf.write_text(GOOD_CONFIG)
    result = run(tmp_path, "keys", "create", "late-option", "--config", str(conf))
    assert result.returncode == 0, result.stderr
    listing = run(tmp_path, "keys", "--config", str(conf), "list")
    assert "late-option" in listing.stdout


def test_cli_reads_dotenv_beside_config(tmp_path):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "config.toml").write_text(GOOD_CONFIG)
    (conf_dir / ".env").write_text('OPENAI_API_KEY="sk-from-dotenv"\n')
    result = run(tmp_path, "--config", "conf/config.toml", "check-config")
    assert result.returncode == 0, result.stderr
    assert "providers enabled: openai" in result.stdout
    assert "OPENAI_API_KEY" not in result.stderr


def test_cli_ignores_dotenv_not_beside_config(tmp_path):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "config.toml").write_text(GOOD_CONFIG)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-cwd\n")
    result = run(tmp_path, "--config", "conf/config.toml", "check-config")
    assert result.returncode == 0
    assert "providers enabled: none" in result.stdout


def test_cli_prefers_already_set_env_var_over_dotenv(tmp_path):
    (tmp_path / "config.toml").write_text(GOOD_CONFIG)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\n")
    # Set (to empty) in the environment: the .env value must not replace it.
    result = run(tmp_path, "check-config", env=clean_env(OPENAI_API_KEY=""))
    assert result.returncode == 0
    assert "providers enabled: none" in result.stdout
    assert "OPENAI_API_KEY" in result.stderr


def test_serve_with_an_unusable_database_path_is_a_clear_error(tmp_path):
    """Issue #4: an unwritable path at startup is a message, not a traceback."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\npath = "{blocker / "gw.db"}"\n[models_dev]\nenabled = false\n')
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode != 0
    assert "database.path" in result.stderr
    assert "Traceback" not in result.stderr
