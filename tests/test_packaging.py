"""The wheel installs into a fresh environment with all three import packages."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_runs_in_fresh_environment(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    wheels = list(dist.glob("lenghu-*.whl"))
    assert len(wheels) == 1, wheels

    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[0])],
                   check=True, timeout=300)
    # Dependencies come from the test environment's site-packages as a plain path:
    # its .pth files (and so the editable lenghu of the checkout) are not processed.
    fresh_site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                     check=True, capture_output=True, text=True).stdout.strip())
    (fresh_site / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    code = (
        "import lenghu, lenghu.pipelines, lenghu.viewer, lenghu.instruments;"
        "print(lenghu.__file__);"
        "print(lenghu.instruments.available_instruments())"
    )
    out = subprocess.run([py, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert str(env_dir) in out.splitlines()[0], "lenghu was not imported from the fresh environment"
    assert "wfst" in out and "kast_blue" in out and "generic" in out, "instrument TOML files missing from the wheel"

    help_text = subprocess.run([env_dir / "bin" / "lenghu", "--help"], check=True, capture_output=True,
                               text=True, cwd=tmp_path).stdout
    assert "simulate" in help_text and "exit status" in help_text
    module_help = subprocess.run([py, "-m", "lenghu", "--help"], check=True, capture_output=True,
                                 text=True, cwd=tmp_path).stdout
    assert module_help == help_text


def test_help_does_not_import_heavy_packages():
    code = (
        "import sys, contextlib, io\n"
        "from lenghu.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
        "heavy = [m for m in ('dask', 'distributed', 'vispy', 'OpenGL', 'h5py', 'zarr', 'scipy', 'astropy') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"lenghu --help imported {out}"


def test_sample_data_is_what_the_script_makes(tmp_path):
    """sample_data/ is reproducible: the night's raw files are remade byte for byte."""
    import hashlib

    sample = REPO / "sample_data" / "night" / "raw"
    shipped = sorted(sample.glob("*.fits.fz"))
    assert len(shipped) == 15
    script = (REPO / "sample_data" / "make_sample_data.sh").read_text()
    line = next(l for l in script.splitlines() if "simulate night" in l)
    assert "--scale 1/36" in line and "--seed 20251120" in line
    from lenghu.cli import main

    # the same night made again: two biases and the last science exposure compared byte for byte
    status = main(["simulate", "night", str(tmp_path / "night"), "--instrument", "wfst", "--scale", "1/36",
                   "--seed", "20251120", "--biases", "3", "--darks", "2", "--flats", "2", "--science", "3",
                   "--filters", "r,g", "--compress", "--no-truth-images", "--quiet"])
    assert status == 0
    for path in shipped[:2] + shipped[-1:]:
        remade = tmp_path / "night" / "raw" / path.name
        assert hashlib.sha256(remade.read_bytes()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    total = sum(p.stat().st_size for p in (REPO / "sample_data").rglob("*") if p.is_file())
    assert total < 25e6, f"sample data is {total / 1e6:.1f} MB"
