"""The scratch .npy files of the masters: rows read and written in place, and dropped when done."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from lenghu.pipelines import tasks
from lenghu.pipelines.progress import is_disk_full
from lenghu.pipelines.reduce import _drop_scratch


def test_rows_written_in_place_read_back_and_leave_the_rest(tmp_path):
    outputs = tasks.create_combine_outputs(str(tmp_path / "combined"), (50, 7))
    rows = np.arange(10 * 7, dtype=np.float64).reshape(10, 7) / 3  # converted to the file's float32
    tasks.npy_write_rows(outputs["image"], 20, rows)
    whole = np.load(outputs["image"])
    assert whole.dtype == np.float32 and whole.shape == (50, 7)
    np.testing.assert_array_equal(whole[20:30], rows.astype(np.float32))
    assert not whole[:20].any() and not whole[30:].any()  # preallocated zeros elsewhere
    np.testing.assert_array_equal(tasks.npy_rows(outputs["image"], 18, 31), whole[18:31])


@pytest.mark.parametrize("y0, shape", [(45, (10, 7)), (0, (3, 8)), (-1, (2, 7))])
def test_rows_that_do_not_fit_are_refused_naming_the_file(tmp_path, y0, shape):
    outputs = tasks.create_combine_outputs(str(tmp_path / "combined"), (50, 7))
    before = np.load(outputs["n_used"]).copy()
    with pytest.raises(ValueError, match="n_used.npy"):
        tasks.npy_write_rows(outputs["n_used"], y0, np.ones(shape, dtype=np.int16))
    np.testing.assert_array_equal(np.load(outputs["n_used"]), before)


def test_scratch_is_dropped_and_a_missing_file_is_no_error(tmp_path):
    files = [tmp_path / f"{i}.npy" for i in range(3)]
    for f in files[:2]:
        np.save(f, np.zeros((2, 2)))
    _drop_scratch(str(f) for f in files)
    assert not any(f.exists() for f in files)


def test_only_a_full_disk_or_quota_counts_as_disk_full():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_disk_full(OSError(errno.EIO, "Input/output error"))
    assert not is_disk_full(ValueError("no space left"))
