"""Where the API key and the server come from; the settings files."""

from __future__ import annotations

import json
import stat

import pytest

from hyperdash import config
from hyperdash.errors import ConfigError
from hyperdash.run import DEFAULT_EXIT_TIMEOUT, exit_timeout_setting


@pytest.fixture
def places(tmp_path, monkeypatch, hyperdash_home):
    """A working directory and a fake user home, so that no real file is consulted."""
    cwd = tmp_path / "cwd"
    user_home = tmp_path / "user"
    cwd.mkdir()
    user_home.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.setattr(config, "_main_script_dir", lambda: None)
    return cwd, user_home, hyperdash_home


def test_home_dir_is_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.setenv("HYPERDASH_HOME", str(tmp_path / "a"))
    assert config.home_dir() == tmp_path / "a"
    monkeypatch.setenv("HYPERDASH_HOME", str(tmp_path / "b"))
    assert config.settings_path() == tmp_path / "b" / "hyperdash.json"


def test_api_key_lookup_order(places, monkeypatch):
    cwd, user_home, home = places
    assert config.api_key() is None
    (user_home / "hyperdash.json").write_text('{"api_key": "from-user-home"}')
    assert config.api_key() == "from-user-home"
    (home / "hyperdash.json").write_text('{"api_key": "from-hyperdash-home"}')
    assert config.api_key() == "from-hyperdash-home"
    (cwd / "hyperdash.json").write_text('{"api_key": "from-cwd"}')
    assert config.api_key() == "from-cwd"
    monkeypatch.setenv("HYPERDASH_API_KEY", "from-env")
    assert config.api_key() == "from-env"
    assert config.api_key(lambda: "from-getter") == "from-getter"


def test_server_url_order(places, monkeypatch):
    cwd, _, _ = places
    assert config.server_url() == "http://127.0.0.1:4680"
    (cwd / "hyperdash.json").write_text('{"server": "http://example.test:1/"}')
    assert config.server_url() == "http://example.test:1"
    monkeypatch.setenv("HYPERDASH_SERVER", "http://127.0.0.1:9999")
    assert config.server_url() == "http://127.0.0.1:9999"


def test_invalid_settings_file_is_a_clear_error(places):
    cwd, _, _ = places
    bad = cwd / "hyperdash.json"
    bad.write_text('{"api_key": ')
    with pytest.raises(ConfigError, match=r"hyperdash\.json is not valid JSON"):
        config.load_settings(bad)
    with pytest.raises(ConfigError, match=str(bad)):
        config.api_key()
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        config.load_settings(bad)


def test_save_settings_merges_atomically_with_private_modes(places):
    _, _, home = places
    target = home / "sub" / "hyperdash.json"
    config.save_settings({"api_key": "k1", "server": "http://s"}, target)
    config.save_settings({"api_key": "k2", "server": None, "access_token": "t"}, target)
    assert json.loads(target.read_text()) == {"api_key": "k2", "access_token": "t"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["hyperdash.json"]  # no temp file left


def test_save_settings_refuses_to_overwrite_an_invalid_file(places):
    _, _, home = places
    path = home / "hyperdash.json"
    path.write_text("{oops")
    with pytest.raises(ConfigError):
        config.save_settings({"api_key": "k"}, path)
    assert path.read_text() == "{oops"  # unchanged


def test_key_source_rereads_only_after_the_interval(places):
    _, _, home = places
    now = [0.0]
    calls = []

    def getter():
        calls.append(now[0])
        return f"key-{len(calls)}"

    source = config.KeySource(getter, refresh_seconds=300, clock=lambda: now[0])
    assert source.get() == "key-1"
    now[0] = 299
    assert source.get() == "key-1"
    now[0] = 300
    assert source.get() == "key-2"
    assert calls == [0.0, 300]


def test_key_source_survives_a_broken_getter_and_a_broken_file(places):
    cwd, _, _ = places

    def broken():
        raise RuntimeError("vault down")

    source = config.KeySource(broken, refresh_seconds=0)
    assert source.get() is None and "vault down" in source.error
    (cwd / "hyperdash.json").write_text("{")
    source = config.KeySource(refresh_seconds=0)
    assert source.get() is None and "not valid JSON" in source.error
    (cwd / "hyperdash.json").write_text('{"api_key": "fixed"}')
    assert source.get() == "fixed" and source.error is None


def test_refresh_interval_from_the_environment(monkeypatch):
    monkeypatch.setenv("HYPERDASH_KEY_REFRESH_SECONDS", "2.5")
    assert config.KeySource().refresh_seconds == 2.5
    monkeypatch.setenv("HYPERDASH_KEY_REFRESH_SECONDS", "soon")
    assert config.KeySource().refresh_seconds == 300


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "Infinity", "-1", "soon"])
def test_a_number_of_seconds_in_the_environment_that_is_no_time_to_wait_is_passed_over(monkeypatch, raw):
    monkeypatch.setenv("HYPERDASH_EXIT_TIMEOUT", raw)
    assert exit_timeout_setting() == DEFAULT_EXIT_TIMEOUT
    monkeypatch.setenv("HYPERDASH_EXIT_TIMEOUT", "1.5")
    assert exit_timeout_setting() == 1.5
