"""One request to the hub before a download: an unreachable hub fails at once, saying what to do instead."""

from __future__ import annotations

import huggingface_hub.constants
import pytest

from irpo import hub


@pytest.fixture
def unreachable_hub(monkeypatch):
    """The hub client's endpoint on a port where nothing listens: every request fails at once."""
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "ANSWERED", set())


def test_an_unreachable_hub_raises_with_what_to_do(unreachable_hub):
    with pytest.raises(ConnectionError) as raised:
        hub.require_hub("some-org/some-data", "dataset", instead="pass task.data_dir=<dir>")
    message = str(raised.value)
    assert message.startswith("the Hugging Face hub cannot be reached for some-org/some-data (")
    assert "pass task.data_dir=<dir>, or set HF_HUB_OFFLINE=1" in message


def test_offline_mode_and_local_folders_ask_nothing(unreachable_hub, monkeypatch, tmp_path):
    hub.require_hub(str(tmp_path), "dataset", instead="-")  # a folder in the hub's layout, read locally
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.require_hub("some-org/some-data", "dataset", instead="-")  # the loaders read their cache
