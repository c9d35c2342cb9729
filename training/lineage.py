"""Where a model came from: code commit, raw-data hash, flattened parameters."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

RAW_DATA_PATH = "data/raw"  # as DVC names the raw folder in dvc.lock and data/raw.dvc


def git_commit(code_root: Path) -> tuple[str | None, bool]:
    """The checked-out commit of the code and whether the working tree has changes.

    Args:
        code_root: A folder inside the git checkout.

    Returns:
        (``git rev-parse HEAD``, dirty flag); ``(None, False)`` outside git or without git.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=code_root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=code_root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None, False
    return head or None, bool(status.strip())


def _dvc_md5(entries: Any, path: str) -> str | None:
    """md5 of the output called ``path`` in a list of DVC ``outs`` entries."""
    for entry in entries or []:
        if isinstance(entry, Mapping) and entry.get("path", "").rstrip("/") in {path, "raw"}:
            md5 = entry.get("md5")
            return str(md5) if md5 else None
    return None


def raw_data_hash(root: Path) -> tuple[str, str]:
    """The version of the raw data: DVC's md5 when DVC tracks it, else one computed here.

    Looks in ``data/raw.dvc`` (``dvc add``), then in ``dvc.lock`` (a pipeline stage whose
    output is ``data/raw``); otherwise hashes the raw Parquet files (names and bytes, in name
    order). The computed hash is not DVC's directory hash, hence the second element.

    Args:
        root: The project root.

    Returns:
        (hash, source) with source ``data/raw.dvc``, ``dvc.lock`` or ``computed``.
    """
    dvc_file = root / "data" / "raw.dvc"
    if dvc_file.exists():
        md5 = _dvc_md5(yaml.safe_load(dvc_file.read_text()).get("outs"), "raw")
        if md5:
            return md5, "data/raw.dvc"
    lock_file = root / "dvc.lock"
    if lock_file.exists():
        stages = (yaml.safe_load(lock_file.read_text()) or {}).get("stages", {})
        for stage in stages.values():
            md5 = _dvc_md5(stage.get("outs"), RAW_DATA_PATH)
            if md5:
                return md5, "dvc.lock"
    digest = hashlib.md5(usedforsecurity=False)
    for path in sorted((root / RAW_DATA_PATH).glob("*.parquet")):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest(), "computed"


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"C": 1.0}}`` -> ``{"train.C": 1.0}``: every leaf of ``params.yaml``.

    Args:
        params: Nested parameters.
        prefix: Key prefix of this level.

    Returns:
        Dotted key -> leaf value.
    """
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat
