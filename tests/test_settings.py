"""Strict configuration: ``config.toml`` -> ``Settings``, errors that name the TOML
path, provider keys from the environment only, and ``.env`` loading."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.settings import load_settings, read_dotenv, settings_from_mapping

ROOT = Path(__file__).resolve().parent.parent
KEYS = {
    "OPENAI_API_KEY": "sk-openai",
    "GEMINI_API_KEY": "gm-key",
    "DEEPSEEK_API_KEY": "ds-key",
    "GROK_API_KEY": "xai-key",
}


def load(data: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    settings, _ = settings_from_mapping(data, env=KEYS if env is None else env)
    return settings


def config_error(data: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        settings_from_mapping(data, env=KEYS if env is None else env)
    return info.value.message


# -- unknown keys -------------------------------------------------------------------


def test_settings_reject_unknown_top_level_key_with_hint():
    message = config_error({"servr": {"port": 8080}})
    assert message.startswith("servr: unknown key")
    assert 'did you mean "server"?' in message


def test_settings_reject_unknown_server_key_with_path_and_hint():
    message = config_error({"server": {"prot": 9000}})
    assert message.startswith("server.prot: unknown key")
    assert 'did you mean "port"?' in message


def test_settings_reject_unknown_provider_key_with_path_and_hint():
    message = config_error({"providers": {"openai": {"defualt_model": "gpt-4o"}}})
    assert message.startswith("providers.openai.defualt_model: unknown key")
    assert 'did you mean "default_model"?' in message


def test_settings_list_known_keys_when_nothing_is_close():
    message = config_error({"logging": {"zzzzzz": 1}})
    assert message.startswith("logging.zzzzzz: unknown key")
    assert "level" in message
    assert "format" in message


def test_settings_reject_api_key_in_toml_as_unknown():
    message = config_error({"providers": {"openai": {"api_key": "sk-in-the-file"}}})
    assert message.startswith("providers.openai.api_key: unknown key")
    assert "sk-in-the-file" not in message


# -- wrong types --------------------------------------------------------------------


def test_settings_reject_port_given_as_string_naming_path():
    message = config_error({"server": {"port": "80"}})
    assert message.startswith("server.port:")
    assert "integer" in message


def test_settings_reject_enabled_given_as_string_naming_path():
    message = config_error({"providers": {"openai": {"enabled": "yes"}}})
    assert message.startswith("providers.openai.enabled:")
    assert "bool" in message


def test_settings_reject_bool_where_number_expected():
    message = config_error({"server": {"graceful_timeout": True}})
    assert message.startswith("server.graceful_timeout:")


def test_settings_reject_section_that_is_not_a_table():
    message = config_error({"server": 8080})
    assert message.startswith("server:")


def test_settings_reject_models_list_with_non_string_item():
    message = config_error({"providers": {"openai": {"models": ["a", 3]}}})
    assert message.startswith("providers.openai.models[1]:")


# -- bad values ---------------------------------------------------------------------


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_settings_reject_port_out_of_range(port):
    assert config_error({"server": {"port": port}}).startswith("server.port:")


def test_settings_reject_unknown_logging_format():
    assert config_error({"logging": {"format": "xml"}}).startswith("logging.format:")


def test_settings_reject_base_url_without_scheme():
    message = config_error({"providers": {"openai": {"base_url": "api.openai.com/v1"}}})
    assert message.startswith("providers.openai.base_url:")
    assert "http://" in message


def test_settings_reject_non_positive_provider_timeout():
    message = config_error({"providers": {"openai": {"read_timeout": 0}}})
    assert message.startswith("providers.openai.read_timeout:")


# -- provider keys --------------------------------------------------------------------


def test_settings_disable_enabled_provider_without_key_and_warn_naming_env_var():
    settings, warnings = settings_from_mapping(
        {"providers": {"openai": {"enabled": True}, "gemini": {"enabled": True}}},
        env={"OPENAI_API_KEY": "sk-openai"},
    )
    assert settings.providers["openai"].enabled
    assert not settings.providers["gemini"].enabled
    assert "gemini" not in settings.enabled_providers()
    assert len(warnings) == 1
    assert warnings[0].startswith("providers.gemini:")
    assert "GEMINI_API_KEY" in warnings[0]


def test_settings_read_keys_from_env_passed_in():
    settings = load(
        {"providers": {"openai": {"enabled": True}}}, env={"OPENAI_API_KEY": "sk-from-env"}
    )
    assert settings.providers["openai"].api_key == "sk-from-env"


def test_settings_read_key_from_the_variable_api_key_env_names():
    settings = load(
        {"providers": {"openai": {"api_key_env": "MY_OPENAI"}}},
        env={"MY_OPENAI": "sk-mine", "OPENAI_API_KEY": "sk-not-this"},
    )
    assert settings.providers["openai"].api_key == "sk-mine"
    assert settings.providers["openai"].enabled


def test_settings_never_show_key_in_repr():
    settings = load({"providers": {"openai": {"enabled": True}}})
    assert "sk-openai" not in repr(settings)


def test_settings_keep_keyless_provider_enabled_without_key():
    settings, warnings = settings_from_mapping({"providers": {"ollama": {"enabled": True}}}, env={})
    assert settings.providers["ollama"].enabled
    assert settings.providers["ollama"].api_key is None
    assert warnings == []


# -- custom providers -----------------------------------------------------------------


def test_settings_accept_custom_provider_with_openai_kind():
    settings = load(
        {
            "providers": {
                "together": {
                    "kind": "openai",
                    "base_url": "https://api.together.example/v1",
                    "default_model": "llama-3",
                    "api_key_env": "TOGETHER_KEY",
                }
            }
        },
        env={**KEYS, "TOGETHER_KEY": "tg-key"},
    )
    together = settings.providers["together"]
    assert together.kind == "openai"
    assert together.enabled
    assert together.api_key == "tg-key"
    assert together.base_url == "https://api.together.example/v1"
    assert together.default_model == "llama-3"


def test_settings_run_custom_provider_without_api_key_env_keyless():
    settings, warnings = settings_from_mapping(
        {"providers": {"vllm": {"kind": "openai", "base_url": "http://127.0.0.1:8000/v1"}}},
        env={},
    )
    assert settings.providers["vllm"].enabled
    assert settings.providers["vllm"].api_key is None
    assert warnings == []


def test_settings_reject_unknown_provider_kind():
    message = config_error(
        {"providers": {"acme": {"kind": "acme-ai", "base_url": "https://acme.example"}}}
    )
    assert message.startswith("providers.acme.kind:")
    assert "acme-ai" in message
    assert "openai" in message


def test_settings_reject_custom_provider_named_after_no_adapter():
    message = config_error({"providers": {"acme": {"base_url": "https://acme.example"}}})
    assert message.startswith("providers.acme.kind:")


# -- defaults -------------------------------------------------------------------------


def test_settings_defaults_match_documented_values():
    settings, warnings = settings_from_mapping({}, env=KEYS)
    assert warnings == []
    assert settings.server.port == 8080
    assert settings.server.host == "0.0.0.0"
    assert settings.database.path == "./data/llm_proxy.db"
    p = settings.providers
    assert (p["openai"].enabled, p["openai"].default_model) == (True, "gpt-4o")
    assert (p["gemini"].enabled, p["gemini"].default_model) == (True, "gemini-2.0-flash")
    assert (p["deepseek"].enabled, p["deepseek"].default_model) == (True, "deepseek-reasoner")
    assert (p["grok"].enabled, p["grok"].default_model) == (False, "grok-beta")
    assert (p["ollama"].enabled, p["ollama"].base_url) == (False, "http://localhost:11434/v1")
    assert p["openai"].base_url == "https://api.openai.com/v1"
    assert p["openai"].api_key_env == "OPENAI_API_KEY"


def test_settings_quietly_disable_unmentioned_provider_without_key():
    settings, warnings = settings_from_mapping({}, env={"OPENAI_API_KEY": "sk-openai"})
    assert sorted(settings.enabled_providers()) == ["openai"]
    assert warnings == []


def test_settings_resolve_database_path_against_config_folder(tmp_path):
    config = tmp_path / "etc" / "config.toml"
    config.parent.mkdir()
    config.write_text('[database]\npath = "db/x.db"\n')
    settings, _ = load_settings(config, env=KEYS)
    assert settings.database_path == tmp_path / "etc" / "db" / "x.db"


def test_settings_load_shipped_config_cleanly():
    path = ROOT / "config.toml"
    settings, warnings = load_settings(path, env=KEYS)
    assert warnings == []
    assert sorted(settings.enabled_providers()) == ["deepseek", "gemini", "openai"]
    # Every documented key in the shipped file is also a declared default.
    data = tomllib.loads(path.read_text())
    assert data["server"]["port"] == settings.server.port == 8080
    assert settings.providers["openai"].default_model == "gpt-4o"


def test_settings_report_invalid_toml_with_file_name(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[server\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={})
    assert str(config) in info.value.message
    assert "not valid TOML" in info.value.message


# -- .env -----------------------------------------------------------------------------


def test_read_dotenv_never_overrides_set_variables(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("OPENAI_API_KEY=from-file\nGEMINI_API_KEY=gm-file\n")
    environ = {"OPENAI_API_KEY": "from-shell"}
    loaded = read_dotenv(dotenv, environ)
    assert environ == {"OPENAI_API_KEY": "from-shell", "GEMINI_API_KEY": "gm-file"}
    assert loaded == ["GEMINI_API_KEY"]


def test_read_dotenv_handles_quotes_comments_and_export(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment line\n"
        "\n"
        "export EXPORTED=exp-value\n"
        'DOUBLE="two words"\n'
        "SINGLE='single # quoted'\n"
        'HASHED="a#b"  # trailing comment\n'
        "PLAIN=plain-value # trailing comment\n"
        "URL=http://x.example/#frag\n"
        "SPACED = spaced \n"
        "EMPTY=\n"
        "not a variable line\n"
    )
    environ: dict[str, str] = {}
    read_dotenv(dotenv, environ)
    assert environ == {
        "EXPORTED": "exp-value",
        "DOUBLE": "two words",
        "SINGLE": "single # quoted",
        "HASHED": "a#b",
        "PLAIN": "plain-value",
        "URL": "http://x.example/#frag",
        "SPACED": "spaced",
        "EMPTY": "",
    }


def test_read_dotenv_ignores_missing_file(tmp_path):
    environ: dict[str, str] = {}
    assert read_dotenv(tmp_path / ".env", environ) == []
    assert environ == {}
