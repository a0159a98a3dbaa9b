"""[retention]: how long documents are kept, "off" to keep them forever."""

from __future__ import annotations

from datetime import timedelta

import pytest

from faxgate.settings import ConfigError, load_settings, masked_dump


@pytest.fixture(autouse=True)
def no_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.delenv("FAXGATE_CONFIG", raising=False)
    monkeypatch.delenv("FAXGATE_RETENTION__DOCUMENTS", raising=False)
    monkeypatch.delenv("FAXGATE_RETENTION__INTERVAL", raising=False)


def test_documents_are_kept_90_days_and_looked_at_hourly_by_default() -> None:
    settings = load_settings()
    assert settings.retention.documents == timedelta(days=90)
    assert settings.retention.interval == timedelta(hours=1)
    assert masked_dump(settings)["retention"] == {"documents": "90d", "interval": "1h"}


@pytest.mark.parametrize(
    ("text", "keep", "shown"),
    [
        ("30d", timedelta(days=30), "30d"),
        ("36h", timedelta(hours=36), "36h"),
        ("off", None, "off"),
        ("OFF", None, "off"),
        ("86400", timedelta(days=1), "1d"),
    ],
)
def test_documents_take_days_durations_or_off(
    text: str, keep: timedelta | None, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_RETENTION__DOCUMENTS", text)
    settings = load_settings()
    assert settings.retention.documents == keep
    assert masked_dump(settings)["retention"]["documents"] == shown
    monkeypatch.setenv("FAXGATE_RETENTION__DOCUMENTS", shown)
    assert load_settings().retention.documents == keep


@pytest.mark.parametrize("text", ["0", "forever", "-1d", "90 days", "0d"])
def test_bad_values_are_refused_by_name(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_RETENTION__DOCUMENTS", text)
    with pytest.raises(ConfigError, match=r"retention\.documents"):
        load_settings()


def test_the_interval_is_a_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_RETENTION__INTERVAL", "5m")
    assert load_settings().retention.interval == timedelta(minutes=5)
    monkeypatch.setenv("FAXGATE_RETENTION__INTERVAL", "0")
    with pytest.raises(ConfigError, match=r"retention\.interval"):
        load_settings()
