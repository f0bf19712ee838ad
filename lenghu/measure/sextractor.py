"""Run SExtractor (Debian's ``source-extractor``) with the settings of a :class:`MeasureConfig`.

Used to compare lenghu's measurements with the reference implementation on
the same image (tests and ``benchmarks/bench_measure.py``). The configuration
is written from the same :class:`~lenghu.measure.MeasureConfig`, so both see
the same background box and filter, threshold, minimum area, kernel,
deblending, cleaning, apertures and Kron parameters. Differences that remain
by design: SExtractor thresholds against the global background RMS (lenghu's
``noise="map"`` follows the RMS map; ``"global"`` is the same), and it reads
only the SCI image (no VAR, no MASK); with ``mask_neighbours`` its
``MASK_TYPE`` is ``CORRECT`` (neighbours' pixels replaced by the mirrored
pixels of the source; sep fills them with the aperture's mean instead),
without it ``NONE``. ``NTHREADS`` is 1 (Debian builds it single-threaded).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from astropy.table import Table

    from lenghu.measure import MeasureConfig

#: The executable's name on Debian (``sex`` elsewhere).
EXECUTABLE = "source-extractor"

#: Catalogue parameters asked of SExtractor: the counterparts of lenghu's columns.
DEFAULT_PARAMETERS: tuple[str, ...] = (
    "NUMBER", "X_IMAGE", "Y_IMAGE", "ERRX2_IMAGE", "ERRY2_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE",
    "A_IMAGE", "B_IMAGE", "THETA_IMAGE", "ELLIPTICITY", "ISOAREA_IMAGE", "FLUX_ISO", "FLUX_MAX",
    "FLUX_AUTO", "FLUXERR_AUTO", "KRON_RADIUS", "FLUX_APER({n})", "FLUXERR_APER({n})", "FLUX_RADIUS", "FLAGS",
)


def source_extractor_available(executable: str = EXECUTABLE) -> bool:
    """Whether ``executable`` is on the PATH."""
    return shutil.which(executable) is not None


def sextractor_settings(config: "MeasureConfig", filter_path: Path | None, gain: float = 0.0,
                        saturation: float = 1e20) -> dict[str, str]:
    """The ``-KEY value`` settings equivalent to ``config``.

    Parameters
    ----------
    config : MeasureConfig
    filter_path : Path or None
        The ``.conv`` file of the detection kernel (None: no filtering).
    gain : float
        ``GAIN``, e-/ADU of the image (0: no Poisson term in the errors; for
        an image already in electrons 1 adds it).
    saturation : float
        ``SATUR_LEVEL`` in image units.
    """
    bc, dc, pc = config.background, config.detection, config.photometry
    return {
        "DETECT_TYPE": "CCD",
        "DETECT_MINAREA": str(dc.min_area),
        "DETECT_THRESH": repr(float(dc.threshold)),
        "ANALYSIS_THRESH": repr(float(dc.threshold)),
        "FILTER": "N" if filter_path is None else "Y",
        "FILTER_NAME": str(filter_path) if filter_path is not None else "default.conv",
        "DEBLEND_NTHRESH": str(dc.deblend_nthresh),
        "DEBLEND_MINCONT": repr(float(dc.deblend_cont)),
        "CLEAN": "Y" if dc.clean else "N",
        "CLEAN_PARAM": repr(float(dc.clean_param)),
        "MASK_TYPE": "CORRECT" if pc.mask_neighbours else "NONE",
        "PHOT_APERTURES": ",".join(repr(2.0 * r) for r in pc.aperture_radii),
        "PHOT_AUTOPARAMS": f"{pc.kron_factor!r},{pc.kron_min_radius!r}",
        "PHOT_AUTOAPERS": f"0.0,{2.0 * pc.kron_min_circular_radius!r}",
        "PHOT_FLUXFRAC": "0.5",
        "SATUR_LEVEL": repr(float(saturation)),
        "GAIN": repr(float(gain)),
        "MAG_ZEROPOINT": "0.0",
        "PIXEL_SCALE": "1.0",
        "BACK_TYPE": "AUTO",
        "BACK_SIZE": f"{bc.box_width},{bc.box_height}",
        "BACK_FILTERSIZE": f"{bc.filter_width},{bc.filter_height}",
        "BACK_FILTTHRESH": repr(float(bc.filter_threshold)),
        "BACKPHOTO_TYPE": "GLOBAL",
        "CHECKIMAGE_TYPE": "NONE",
        "MEMORY_PIXSTACK": str(dc.pixel_stack),
        "MEMORY_OBJSTACK": "30000",
        "MEMORY_BUFSIZE": "1024",
        "NTHREADS": "1",
        "WRITE_XML": "N",
        "VERBOSE_TYPE": "QUIET",
        "CATALOG_TYPE": "FITS_LDAC",
    }


def write_kernel(kernel: np.ndarray, path: Path) -> Path:
    """Write a detection kernel as a SExtractor ``.conv`` file (``CONV NORM``)."""
    rows = "\n".join(" ".join(f"{v:.6g}" for v in row) for row in np.asarray(kernel, dtype=float))
    path.write_text(f"CONV NORM\n# kernel written by lenghu\n{rows}\n")
    return path


def run_source_extractor(image: str | Path, workdir: str | Path, config: "MeasureConfig | None" = None,
                         hdu: int | None = None, gain: float = 0.0, saturation: float = 1e20,
                         parameters: Sequence[str] = DEFAULT_PARAMETERS,
                         extra: Mapping[str, str] | None = None, executable: str = EXECUTABLE,
                         timeout: float = 1200.0) -> "Table":
    """Run SExtractor on one image with the settings of ``config``; return its catalogue.

    Parameters
    ----------
    image : str or Path
        FITS file.
    workdir : str or Path
        Folder for the configuration files and the catalogue (created).
    config : MeasureConfig, optional
        Default: ``MeasureConfig()``.
    hdu : int, optional
        Extension to read (``image.fits[hdu]``; SExtractor's extension numbers
        count the primary HDU as 0).
    gain, saturation : float
        See :func:`sextractor_settings`.
    parameters : sequence of str
        Output parameters; ``{n}`` is replaced by the number of apertures.
    extra : mapping, optional
        Settings that override the derived ones.
    executable : str
    timeout : float
        Seconds.

    Returns
    -------
    astropy.table.Table
        The ``LDAC_OBJECTS`` table, SExtractor's column names (1-based pixels).

    Raises
    ------
    FileNotFoundError
        The executable is not installed.
    RuntimeError
        SExtractor exited with an error (its output is in the message).
    """
    from astropy.table import Table

    from lenghu.measure import MeasureConfig

    exe = shutil.which(executable)
    if exe is None:
        raise FileNotFoundError(f"{executable} is not installed (Debian package source-extractor)")
    config = config or MeasureConfig()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    kernel = config.detection.kernel()
    filter_path = write_kernel(kernel, workdir / "detect.conv") if kernel is not None else None
    naper = len(config.photometry.aperture_radii)
    param_path = workdir / "lenghu.param"
    param_path.write_text("\n".join(p.format(n=naper) for p in parameters) + "\n")
    catalog = workdir / "sextractor.cat"
    settings = sextractor_settings(config, filter_path, gain=gain, saturation=saturation)
    settings.update({"PARAMETERS_NAME": str(param_path), "CATALOG_NAME": str(catalog)})
    settings.update(extra or {})
    target = f"{Path(image)}[{hdu}]" if hdu is not None else str(image)
    args = [exe, target, "-c", "/dev/null"]
    for key, value in settings.items():
        args += [f"-{key}", value]
    proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not catalog.exists():
        raise RuntimeError(f"{executable} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return Table.read(catalog, hdu=2)
