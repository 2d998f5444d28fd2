"""Where the control socket lives by default, and how a configured path overrides it."""

from __future__ import annotations

import pytest

from pounce.control.paths import default_socket_path, socket_path_for


@pytest.mark.parametrize(
    ("environ", "uid", "expected"),
    [
        ({"RUNTIME_DIRECTORY": "/run/app"}, 1000, "/run/app/pounce.sock"),
        ({"RUNTIME_DIRECTORY": "/run/app"}, 0, "/run/app/pounce.sock"),
        ({"RUNTIME_DIRECTORY": "/run/a:/run/b"}, 0, "/run/a/pounce.sock"),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 0, "/run/pounce/pounce.sock"),
        ({}, 0, "/run/pounce/pounce.sock"),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/pounce/pounce.sock"),
        ({"RUNTIME_DIRECTORY": "", "XDG_RUNTIME_DIR": ""}, 1000, "/tmp/pounce-1000/pounce.sock"),
        ({}, 1000, "/tmp/pounce-1000/pounce.sock"),
    ],
)
def test_default_socket_path(environ: dict[str, str], uid: int, expected: str) -> None:
    assert default_socket_path(environ, uid) == expected


def test_the_default_follows_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/from-systemd")
    assert default_socket_path() == "/run/from-systemd/pounce.sock"
    assert socket_path_for(None) == "/run/from-systemd/pounce.sock"
    assert socket_path_for("") == "/run/from-systemd/pounce.sock"


def test_a_configured_socket_wins() -> None:
    assert socket_path_for("/srv/app/ctl.sock") == "/srv/app/ctl.sock"
