"""Size of the function package as ``sam build`` made it, zipped the way it is deployed."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any


def measure_package(package_dir: Path, top: int = 5) -> dict[str, Any]:
    """Zip ``package_dir`` with deflate (as ``sam package`` uploads it) and report sizes.

    ``__pycache__`` folders are left out, because ``sam build`` writes none. An
    interpreter that imported from the folder (the local stack does) writes them, so their
    size is reported apart as ``bytecode_bytes_left_out``.

    Parameters
    ----------
    package_dir:
        ``.aws-sam/build/<FunctionLogicalId>``.
    top:
        How many top-level entries of the package to list, largest unzipped first.

    Returns
    -------
    dict
        ``zipped_bytes``, ``unzipped_bytes``, ``files``, ``bytecode_bytes_left_out`` and
        ``largest``: the ``top`` entries
        with their unzipped and compressed bytes.

    Raises
    ------
    FileNotFoundError
        ``package_dir`` does not exist: run ``make build`` first.
    """
    if not package_dir.is_dir():
        raise FileNotFoundError(f"{package_dir} does not exist: run `make build` first")
    unzipped_by_entry: dict[str, int] = defaultdict(int)
    zipped_by_entry: dict[str, int] = defaultdict(int)
    files = 0
    bytecode_bytes = 0
    with tempfile.TemporaryDirectory(prefix="bench-package-") as scratch:
        archive_path = Path(scratch) / "function.zip"
        with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for root, folders, names in os.walk(package_dir):
                for folder in folders:
                    if folder == "__pycache__":
                        bytecode_bytes += sum(entry.stat().st_size for entry in (Path(root) / folder).iterdir())
                folders[:] = sorted(folder for folder in folders if folder != "__pycache__")
                for name in sorted(names):
                    path = Path(root) / name
                    relative = path.relative_to(package_dir)
                    archive.write(path, relative.as_posix())
                    files += 1
        zipped_bytes = archive_path.stat().st_size
        with zipfile.ZipFile(archive_path) as archive:
            for info in archive.infolist():
                entry = info.filename.split("/", 1)[0]
                unzipped_by_entry[entry] += info.file_size
                zipped_by_entry[entry] += info.compress_size
    ranked = sorted(unzipped_by_entry.items(), key=lambda item: item[1], reverse=True)[:top]
    return {
        "package_dir": str(package_dir),
        "zipped_bytes": zipped_bytes,
        "unzipped_bytes": sum(unzipped_by_entry.values()),
        "files": files,
        "bytecode_bytes_left_out": bytecode_bytes,
        "largest": [
            {"entry": entry, "unzipped_bytes": size, "zipped_bytes": zipped_by_entry[entry]} for entry, size in ranked
        ],
    }


def loaded_bytes_by_entry(package_root: Path, loaded_files: list[str]) -> dict[str, int]:
    """Return, per top-level entry of a package, the bytes of its files that an interpreter loaded.

    Parameters
    ----------
    package_root:
        The folder the files were loaded from.
    loaded_files:
        ``__file__`` of every loaded module under ``package_root``.
    """
    loaded: dict[str, int] = defaultdict(int)
    for name in loaded_files:
        path = Path(name).resolve()
        try:
            entry = path.relative_to(package_root).parts[0]
        except ValueError:
            continue
        loaded[entry] += path.stat().st_size
    return dict(loaded)
