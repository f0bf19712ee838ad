"""Output format names, and which one a file name asks for.

The input's format is always found from its content
(:func:`lenghu.io.inspect.sniff`); the output's from ``--to`` or, failing
that, from the output's extension.
"""

from __future__ import annotations

from pathlib import Path

#: Output formats and the extensions that ask for them (first: the one lenghu gives new files).
EXTENSIONS = {
    "fits": (".fits", ".fit", ".fts"),
    "fz": (".fits.fz", ".fz"),
    "zarr": (".zarr",),
    "hdf5": (".h5", ".hdf5", ".he5"),
    "gadget4": (),
    "parquet": (".parquet", ".pq"),
    "votable": (".vot", ".votable", ".xml"),
    "ecsv": (".ecsv",),
    "csv": (".csv",),
}
FORMATS = tuple(EXTENSIONS)
#: Input suffixes removed to make an output name (``b21.fits.gz`` -> ``b21``).
_INPUT_SUFFIXES = (".fits.gz", ".fits.fz", ".fits.bz2", ".fit.gz", ".fz", ".gz", ".bz2", ".fits", ".fit", ".fts",
                   ".zarr", ".hdf5", ".h5", ".parquet", ".pq", ".vot", ".votable", ".xml", ".ecsv", ".csv", ".dat")


def format_from_name(path: str | Path) -> str | None:
    """The output format an output path's extension asks for, or None.

    Examples
    --------
    >>> format_from_name("x.fits.fz"), format_from_name("cat.PARQUET"), format_from_name("out")
    ('fz', 'parquet', None)
    """
    name = Path(path).name.lower()
    best = None
    for fmt, extensions in EXTENSIONS.items():
        for ext in extensions:
            if name.endswith(ext) and (best is None or len(ext) > len(best[1])):
                best = (fmt, ext)
    return None if best is None else best[0]


def output_name(source: str | Path, fmt: str) -> str:
    """The file name a converted ``source`` gets in format ``fmt`` (batch conversions).

    Examples
    --------
    >>> output_name("night/b21.fits.gz", "zarr")
    'b21.zarr'
    >>> output_name("snapdir_005", "gadget4")
    'snapdir_005.hdf5'
    """
    name = Path(source).name
    lower = name.lower()
    for suffix in _INPUT_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    ext = EXTENSIONS[fmt][0] if EXTENSIONS[fmt] else ".hdf5"
    return name + ext
