"""``pounce.run``'s settings and errors, without serving: names from the flags, unknown names,
bad values, app objects and process workers; ``import pounce`` stays cheap."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

import pounce
from apps.middleware_app import app as APP_OBJECT
from pounce.api import build_config, setting_names
from pounce.config import Config, ServerConfig, WorkerMode, schema
from pounce.errors import ConfigError, PounceError, UsageError


def test_every_flag_is_a_keyword() -> None:
    names = setting_names()
    for spec in schema.single_settings():
        if spec.dotted == "app":
            continue
        for flag in spec.flags:
            assert names[flag[2:].replace("-", "_")] == spec.dotted
    assert names["keep_alive_timeout"] == names["timeout_keep_alive"] == "http.keep_alive_timeout"
    assert names["forwarded_allow_ips"] == "proxy.trusted"
    assert names["limit_concurrency"] == "limits.max_concurrent_requests"
    assert names["log_level"] == "logging.level"
    assert names["tls_password"] == "tls.password"  # no flag: named by its key path


def test_settings_become_the_config() -> None:
    config = build_config(
        "apps.middleware_app:app",
        config=None,
        settings={"port": 9123, "workers": 3, "log_level": "debug", "http2": False},
        env={},
    )
    assert config.app == "apps.middleware_app:app"
    assert [(e.host, e.port) for e in config.listen] == [("127.0.0.1", 9123)]
    assert config.server.workers == 3
    assert config.logging.level.value == "debug"
    assert config.http2.enabled is False


def test_settings_override_the_config_and_the_environment_is_not_read() -> None:
    base = Config(app="apps.middleware_app:app", server=ServerConfig(workers=2, backlog=64))
    env = {"POUNCE_SERVER_BACKLOG": "7"}
    config = build_config(base.app, config=base, settings={"workers": 5}, env=env)
    assert (config.server.workers, config.server.backlog) == (5, 64)
    # without a config, the environment is a layer under the settings, as for `pounce serve`
    config = build_config("apps.middleware_app:app", config=None, settings={}, env=env)
    assert config.server.backlog == 7


def test_unknown_setting_is_a_type_error_with_a_guess() -> None:
    with pytest.raises(TypeError, match=r"unknown setting 'workres' \(did you mean 'workers'\?\)"):
        pounce.run("apps.middleware_app:app", workres=2)
    with pytest.raises(TypeError, match=r"unknown setting 'reload': pounce has no code reloader"):
        pounce.run("apps.middleware_app:app", reload=True)
    with pytest.raises(TypeError, match=r"'keep_alive_timeout' and 'timeout_keep_alive'"):
        pounce.run("apps.middleware_app:app", keep_alive_timeout=1, timeout_keep_alive=2)


def test_bad_values_are_config_errors_with_the_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        pounce.run("apps.middleware_app:app", workers=0, log_level="loud", port=70000)
    text = str(info.value)
    assert "server.workers: must be >= 1, got 0" in text
    assert "logging.level: must be one of" in text
    assert "listen[0].port: must be 0-65535, got 70000" in text


def test_an_object_with_process_workers_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="an app object runs with one worker or thread workers"):
        pounce.run(APP_OBJECT, workers=2, worker_mode="process")


def test_not_from_another_thread() -> None:
    caught: list[BaseException] = []

    def call() -> None:
        try:
            pounce.run("apps.middleware_app:app")
        except PounceError as exc:
            caught.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(30)
    assert len(caught) == 1 and isinstance(caught[0], UsageError)
    assert "main thread" in str(caught[0])


def test_an_object_with_one_worker_gets_a_thread_worker() -> None:
    from pounce.api import for_app_object

    config = build_config(APP_OBJECT, config=None, settings={"worker_mode": "process"}, env={})
    assert for_app_object(config).server.worker_mode is WorkerMode.THREAD


def test_import_pounce_stays_cheap_and_testing_needs_no_pytest() -> None:
    code = (
        "import sys, pounce\n"
        "assert callable(pounce.run)\n"
        "heavy = [m for m in ('pounce.api', 'pounce.config', 'asyncio') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import pounce.testing\n"
        "assert 'pytest' not in sys.modules\n"
        "assert not hasattr(pounce.testing, 'pounce_server')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_test_server_takes_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pounce.testing import TestServer

    with pytest.raises(TypeError, match=r"unknown setting 'http3' \(did you mean 'http2'\?\)"):
        TestServer(APP_OBJECT, http3=True)
    with pytest.raises(ConfigError, match=r"server\.backlog"):
        TestServer(APP_OBJECT, backlog=-1)
    monkeypatch.setenv("POUNCE_SERVER_BACKLOG", "7")
    monkeypatch.setenv("PORT", "9999")
    server = TestServer(APP_OBJECT)  # the environment is not read; built, not started
    assert [(e.host, e.port) for e in server.config.listen] == [("127.0.0.1", 0)]
    assert server.config.server.backlog != 7
