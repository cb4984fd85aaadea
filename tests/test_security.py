"""Security regressions (issue 20): each test failed before its fix. Fast ones here; the ones that
need a real server process live beside the server fixture in test_serve.py."""

from __future__ import annotations

import stat

import pytest

from ragtune.config import PipelineConfig, redact_url

SECRET_URL = ["store.backend=pgvector", "store.url=postgresql://rt:s3cret-pw@db.internal:5432/rag"]


def test_pipeline_yaml_never_holds_store_secrets(tmp_path):
    cfg = PipelineConfig().with_overrides([*SECRET_URL, "store.api_key=k3y-value"])
    cfg.save(tmp_path / "pipeline.yaml")
    written = (tmp_path / "pipeline.yaml").read_text()
    assert "s3cret-pw" not in written and "k3y-value" not in written
    assert "postgresql://rt@db.internal:5432/rag" in written  # the rest of the address stays readable
    secrets = tmp_path / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    back = PipelineConfig.load(tmp_path / "pipeline.yaml")
    assert back.store.url == cfg.store.url and back.store.api_key == "k3y-value"


def test_saving_without_secrets_removes_a_stale_secrets_file(tmp_path):
    PipelineConfig().with_overrides(SECRET_URL).save(tmp_path / "pipeline.yaml")
    PipelineConfig().save(tmp_path / "pipeline.yaml")
    assert not (tmp_path / "secrets.json").exists()
    assert PipelineConfig.load(tmp_path / "pipeline.yaml").store.url is None


def test_shown_pipeline_redacts_secrets_and_keeps_the_rest():
    shown = PipelineConfig().with_overrides([*SECRET_URL, "store.api_key=k3y-value"]).shown()
    assert shown["store"]["url"] == "postgresql://rt:***@db.internal:5432/rag"
    assert shown["store"]["api_key"] == "***"
    assert "s3cret-pw" not in repr(shown) and "k3y-value" not in repr(shown)
    assert PipelineConfig().shown()["store"]["api_key"] is None  # unset stays visibly unset


@pytest.mark.parametrize("url", ["postgresql://u:p%40ss@h/x", "postgresql://u:pw@/db?host=/run/pg"])
def test_redact_url_handles_encoded_and_socket_addresses(url):
    assert "pw" not in redact_url(url).replace("postgresql", "") and "p%40ss" not in redact_url(url)
    assert redact_url(url).endswith(url.rpartition("@")[2])


def test_unreadable_secrets_file_is_a_clear_error(tmp_path):
    from ragtune.config import ConfigError

    PipelineConfig().with_overrides(SECRET_URL).save(tmp_path / "pipeline.yaml")
    (tmp_path / "secrets.json").write_text("{not json")
    with pytest.raises(ConfigError, match="secrets.json.*PGPASSWORD"):
        PipelineConfig.load(tmp_path / "pipeline.yaml")
