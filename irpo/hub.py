"""The Hugging Face hub, asked once before a download, so that an unreachable hub fails at once.

Left alone, `datasets` and transformers retry a failed request five times (about 25 s here) and then raise a
ConnectionError several screens deep. One request first tells: the hub answers, or it does not and the run
stops with what to do instead. With HF_HUB_OFFLINE set, nothing is asked: the libraries read their local cache
and fail at once where it lacks the files.
"""

from __future__ import annotations

import os
from pathlib import Path

ANSWERED: set[tuple[str, str]] = set()  # (repo type, repo id) the hub answered for, in this process


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}


def offline_hint() -> str:
    return "or set HF_HUB_OFFLINE=1 to use a copy an earlier run left in the hub's cache"


def require_hub(repo_id: str, repo_type: str, instead: str) -> None:
    """Returns if the hub answers for `repo_id` (or offline mode is set); else raises ConnectionError, whose
    message says `instead` (what to pass instead of a download). An answer that is an error (no such repo, a
    gated one) is the loader's to report, in its own words."""
    if offline() or (repo_type, repo_id) in ANSWERED or Path(repo_id).expanduser().exists():
        return  # a local folder in the hub's layout is read by the same loaders, without the hub
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=10)
    except (HfHubHTTPError, ValueError):  # the hub answered, or the id is malformed: the loader says which
        pass
    except Exception as e:  # the request did not get through: no network, no DNS, a proxy, a timeout
        raise ConnectionError(
            f"the Hugging Face hub cannot be reached for {repo_id} ({type(e).__name__}: {e}): {instead}, "
            f"{offline_hint()}"
        ) from None
    ANSWERED.add((repo_type, repo_id))
