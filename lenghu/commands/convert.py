"""``lenghu convert INPUT OUTPUT``: between FITS, .fz, Zarr, HDF5, catalogue formats and snapshot formats."""

from __future__ import annotations

import argparse

FORMATS = ("fits", "fz", "zarr", "hdf5", "gadget4", "parquet", "votable", "ecsv", "csv")

EPILOG = """\
The input's format comes from its content; the output's from --to or its
extension (.fits .fz .zarr .h5/.hdf5 .parquet .vot .ecsv .csv).

  images, MEF, cubes:  FITS (plain/.gz/.fz) <-> Zarr v3 <-> HDF5, and -> .fz
                       (lossless: Rice for integers, GZIP_2 for floats;
                       --quantize Q for lossy float compression, recorded)
  catalogues:          FITS table <-> Parquet <-> VOTable <-> ECSV <-> CSV <-> HDF5
                       (units and metadata kept)
  snapshots:           Gadget-2 binary, Gadget-3/4, AREPO, SWIFT, EAGLE, IllustrisTNG
                       -> Zarr or Gadget-4 HDF5, streamed chunk by chunk
                       -> OUT.lod: a level-of-detail octree for `lenghu view/render`
  large images:        FITS -> OUT.pyr: a tile pyramid for `lenghu view/render`;
                       a raw WFST exposure, or its calibrated products (a quoted
                       glob), -> OUT.pyr: all CCDs on one canvas

With a folder or glob as INPUT, OUTPUT is a folder: every file is converted
in parallel (--workers threads) with a progress bar; files that fail are
listed with the reason and the others are converted (exit status 3).

examples:
  lenghu convert test0.fits test0.zarr
  lenghu convert test0.zarr back.fits
  lenghu convert b21.fits.gz b21.fits.fz
  lenghu convert cube.fits cube.h5 --squeeze
  lenghu convert catalogue.fits catalogue.parquet
  lenghu convert snapdir_005/ snap_005.zarr
  lenghu convert snapshot_000.hdf5 web.lod
  lenghu convert mosaic.fits mosaic.pyr
  lenghu convert 'out/calibrated/wfst_20251120_00015_*.fits' exposure.pyr
  lenghu convert 'night/*.fits.gz' night_fz/ --to fz
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert",
        help="convert images, cubes, catalogues and snapshots between formats, losslessly",
        description="Convert a file (or a folder/glob of files) to another format without losing data, "
        "header cards, units or WCS.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("input", metavar="INPUT", help="file, snapshot folder, store, folder of files, or a quoted glob")
    parser.add_argument("output", metavar="OUTPUT", help="output file (or folder, for several inputs)")
    parser.add_argument("--to", choices=FORMATS, help="output format (default: from OUTPUT's extension)")
    parser.add_argument("--quantize", type=float, metavar="Q", help=".fz: quantise float pixels at level Q (lossy)")
    parser.add_argument("--algorithm", choices=("rice", "gzip1", "gzip2", "hcompress"), help=".fz: compression algorithm")
    parser.add_argument("--squeeze", action="store_true", help="Zarr/HDF5 images: drop axes of length 1")
    parser.add_argument("--hdu", help="FITS catalogue input: table HDU (number or EXTNAME)")
    parser.add_argument("--files", type=int, default=1, metavar="N", help="Gadget-4 output: split into N files")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="several inputs: parallel threads")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from lenghu.convert.api import ConvertOptions, convert
    from lenghu.convert.batch import convert_many, expand_inputs, is_batch

    if args.output.rstrip("/\\").lower().endswith(".lod"):  # an octree store for the viewer (lenghu.viewer.lod)
        from lenghu.viewer.lod.command import convert_to_lod

        return convert_to_lod(args)
    if args.output.rstrip("/\\").lower().endswith(".pyr"):  # an image pyramid for the viewer (lenghu.viewer.tiles)
        from lenghu.viewer.tiles.command import convert_to_pyramid

        return convert_to_pyramid(args)
    hdu = int(args.hdu) if args.hdu is not None and args.hdu.isdigit() else args.hdu
    options = ConvertOptions(quantize=args.quantize, algorithm=args.algorithm, squeeze=args.squeeze, hdu=hdu,
                             files=args.files)
    if is_batch(args.input):
        if args.to is None:
            print("lenghu convert: error: several inputs need --to FORMAT", file=sys.stderr)
            return 2
        sources = expand_inputs(args.input)
        if not sources:
            print(f"lenghu convert: error: {args.input}: no files", file=sys.stderr)
            return 1
        report = convert_many(sources, Path(args.output), args.to, options, args.workers, progress=not args.quiet)
        for r in report.converted:
            for note in r.notes:
                print(f"{r.source.name}: {note}")
        for f in report.failed:
            print(f"FAILED {f.source}: {f.error}", file=sys.stderr)
        print(f"converted {len(report.converted)} of {len(sources)} file(s) into {args.output} in {report.seconds:.1f} s")
        return 3 if report.failed else 0
    result = convert(args.input, args.output, args.to, options)
    for note in result.notes:
        print(f"note: {note}")
    print(f"{result.source} ({result.input_format} {result.kind}) -> {result.output} ({result.output_format}) "
          f"in {result.seconds:.2f} s")
    return 0
