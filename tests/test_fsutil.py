"""Atomic files: readers see the old file or the whole new one; a failed write leaves no trace."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from alphapulse_onnx._fsutil import atomic_file


def test_streamed_writes_appear_only_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "new" / "out.bin"  # the folder is created too
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent  # same folder: the rename never crosses file systems
        with tmp.open("wb") as handle:
            handle.write(b"one,")
            handle.write(b"two")
        assert not target.exists()
    assert target.read_bytes() == b"one,two"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_a_failed_block_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def write_then_fail() -> None:
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_then_fail()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
