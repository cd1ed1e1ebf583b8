"""Local cache folders for teacher embeddings and mined results."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Return ``$B3_ST_CACHE`` if set, else ``$HF_HOME/b3_st`` as other Hugging Face libraries do."""
    override = os.environ.get("B3_ST_CACHE")
    if override:
        return Path(override).expanduser()

    # Read at call time, not import time, so that tests and users can change HF_HOME late.
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home).expanduser() / "b3_st"
    xdg_cache = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(xdg_cache).expanduser() / "huggingface" / "b3_st"


def cache_root(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def embeddings_dir(cache_dir: str | os.PathLike | None) -> Path:
    return cache_root(cache_dir) / "embeddings"


def mined_dir(cache_dir: str | os.PathLike | None, fingerprint: str, settings_key: str) -> Path:
    """Return the folder of the mined result for one dataset fingerprint and settings key."""
    return cache_root(cache_dir) / "mined" / f"{fingerprint[:16]}-{settings_key}"
