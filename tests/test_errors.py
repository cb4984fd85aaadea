"""User errors vs bugs: only a RagtuneError becomes a one-line CLI error or an HTTP 4xx/5xx with
its message; anything else keeps its traceback (CLI) or is a 500 with an error id in the log."""

from __future__ import annotations

import logging
import sys

import pytest

from ragtune.errors import BusyError, InputError, NotFoundError, RagtuneError, StateError


def test_each_user_error_is_also_its_builtin_kind():
    assert issubclass(InputError, ValueError) and issubclass(NotFoundError, LookupError)
    assert issubclass(BusyError, RuntimeError) and issubclass(StateError, ValueError)
    assert (NotFoundError.status, StateError.status, InputError.status) == (404, 409, 400)
    from ragtune.collection import CollectionNotFoundError
    from ragtune.config import ConfigError
    from ragtune.index.base import StoreBusyError

    assert issubclass(CollectionNotFoundError, NotFoundError) and issubclass(ConfigError, InputError)
    assert issubclass(StoreBusyError, BusyError)


def _run_main(monkeypatch, *args):
    from ragtune.cli import main

    monkeypatch.setattr(sys, "argv", ["ragtune", *args])
    main()


def test_cli_user_error_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys, home):
    with pytest.raises(SystemExit) as exit_:
        _run_main(monkeypatch, "search", "x", "-c", "nope", "--home", str(home))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no collection 'nope'") and "Traceback" not in err

    from ragtune.collection import Collection

    def broken(*_, **__):
        raise KeyError("an internal bug")

    monkeypatch.setattr(Collection, "open", classmethod(broken))
    with pytest.raises(KeyError, match="an internal bug"):  # not swallowed into an "error:" line
        _run_main(monkeypatch, "search", "x", "-c", "nope", "--home", str(home))


def test_server_answers_user_errors_with_their_status_and_bugs_with_a_logged_500(home, caplog):
    from fastapi.testclient import TestClient

    from ragtune.serve.app import create_app
    from ragtune.serve.keys import KeyStore

    store = KeyStore(home)
    key = store.create("root", role="admin")[0]
    store.close()
    app = create_app(home)

    def user_error():
        raise StateError("index version v3 is not ready")

    def bug():
        raise KeyError("secret internal detail")

    app.add_api_route("/test/user-error", user_error)
    app.add_api_route("/test/bug", bug)
    with TestClient(app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}) as client, \
            caplog.at_level(logging.ERROR, "ragtune.serve"):
        r = client.get("/test/user-error")
        assert r.status_code == 409
        assert r.json() == {"error": {"message": "index version v3 is not ready", "type": "conflict", "code": 409}}
        r = client.get("/test/bug")
        assert r.status_code == 500 and r.json()["error"]["type"] == "internal_error"
        message = r.json()["error"]["message"]
        assert "secret internal detail" not in message  # the caller gets an id, not the internals
        error_id = message.split()[2]
        logged = [rec for rec in caplog.records if error_id in rec.getMessage()]
        assert logged and logged[0].exc_info and "secret internal detail" in str(logged[0].exc_info[1])
    assert isinstance(StateError("x"), RagtuneError)
