"""The night report: ``OUT/report/index.html``, one self-contained page.

Everything comes from the registry and the products: frames and failures,
master quality figures, FWHM, sky and zeropoint against time and airmass,
astrometric residuals, thumbnails of every product, and the resources the
runs used (with an energy estimate whose assumption is written beside it).
Images are PNGs embedded as data URIs, so the page can be mailed or archived
as one file.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lenghu.io.atomic import write_bytes_atomic

THUMBNAIL_PIXELS = 160


@dataclass(frozen=True)
class ReportConfig:
    """Settings of the night report.

    Attributes
    ----------
    watts_per_core : float
        Power drawn by one busy CPU core, W, for the energy estimate (10 W is
        typical of a server core under load; set it for your machine).
    thumbnails : bool
        Include a thumbnail of every product.
    """

    watts_per_core: float = 10.0
    thumbnails: bool = True


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(uri: str, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img src="{uri}" alt="{html.escape(alt)}"{size}>'


def thumbnail(path: str) -> str:
    """An asinh-stretched thumbnail of a product's SCI plane (or first image), as a data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval

    with fits.open(path, mode="readonly", memmap=True) as hdul:
        hdu = hdul["SCI"] if "SCI" in [h.name for h in hdul] else next(h for h in hdul if h.data is not None)
        data = hdu.data
        step = max(1, max(data.shape) // (2 * THUMBNAIL_PIXELS))
        small = np.asarray(data[::step, ::step], dtype=np.float32)
    small = np.where(np.isfinite(small), small, np.nanmedian(small))
    norm = ImageNormalize(small, interval=ZScaleInterval(), stretch=AsinhStretch())
    fig = plt.figure(figsize=(2, 2))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(small, origin="lower", cmap="gray", norm=norm)
    ax.set_axis_off()
    return _png(fig)


def _trend_plots(rows: list[dict]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lenghu.measure.zeropoint import fit_airmass_trend

    plots = []
    mjd = np.array([r["mjd"] or np.nan for r in rows], dtype=float)
    hours = (mjd - np.nanmin(mjd)) * 24 if np.isfinite(mjd).any() else mjd
    airmass = np.array([r["airmass"] or np.nan for r in rows], dtype=float)
    filters = [r["filter"] for r in rows]
    for key, label in (("fwhm_arcsec", "FWHM (arcsec)"), ("sky_e", "sky (e- per pixel)"),
                       ("zeropoint", "zeropoint (AB mag for 1 e-/s)")):
        values = np.array([r.get(key) if r.get(key) is not None else np.nan for r in rows], dtype=float)
        if not np.isfinite(values).any():
            continue
        fig, axes = plt.subplots(1, 2, figsize=(8, 2.8), sharey=True)
        for f in sorted(set(filters)):
            sel = np.array([x == f for x in filters])
            axes[0].plot(hours[sel], values[sel], "o", ms=4, label=f)
            axes[1].plot(airmass[sel], values[sel], "o", ms=4, label=f)
        axes[0].set_xlabel("hours since first exposure")
        axes[1].set_xlabel("airmass")
        axes[0].set_ylabel(label)
        axes[0].legend(fontsize=7)
        if key == "zeropoint":
            for f in sorted(set(filters)):
                sel = np.array([x == f for x in filters]) & np.isfinite(values)
                errors = np.array([r.get("zeropoint_err") or 0.01 for r in rows], dtype=float)[sel]
                trend = fit_airmass_trend(airmass[sel], values[sel], errors)
                if trend.ok:
                    grid = np.linspace(np.nanmin(airmass[sel]), np.nanmax(airmass[sel]), 10)
                    axes[1].plot(grid, trend.predict(grid), "-", lw=1)
        fig.tight_layout()
        plots.append((label, _png(fig)))
    return plots


def _residual_plot(catalogs: list[dict]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lenghu.measure import read_catalog

    fitted = [c for c in catalogs if c["quality"].get("astrometry") == "ok"][:12]
    if not fitted:
        return None
    cols = min(4, len(fitted))
    rows = math.ceil(len(fitted) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, row in zip(axes.flat, fitted):
        table = read_catalog(row["path"])
        if "astrom_dra" not in table.colnames:
            continue
        good = np.isfinite(np.asarray(table["astrom_dra"], dtype=float))
        x, y = np.asarray(table["xwin"])[good], np.asarray(table["ywin"])[good]
        dx, dy = np.asarray(table["astrom_dra"])[good], np.asarray(table["astrom_ddec"])[good]
        ax.set_axis_on()
        ax.quiver(x, y, dx, dy, angles="xy", scale_units="xy", scale=0.002, width=0.006)
        ax.set_title(f"{Path(row['path']).name[:24]}\nRMS {row['quality']['astrometry_rms_arcsec']:.3f}\"",
                     fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("astrometric residuals (reference - fit), arrows x 500", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: left; }}
.thumbs figure {{ display: inline-block; margin: 4px; font-size: 0.7em; width: 170px; }}
.bad {{ color: #a00; }}
</style></head>
<body>
<h1>{title}</h1>
{body}
<script>
window.addEventListener("load", function () {{
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) {{ if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }}
  document.body.setAttribute("data-images", ok + "/" + imgs.length);
}});
</script>
</body></html>
"""


def write_report(out: Path, registry, config: ReportConfig = ReportConfig()) -> Path:
    """Write ``OUT/report/index.html`` from the registry; return its path."""
    frames = registry.frames()
    products = registry.products()
    runs = registry.runs()
    sections = []

    counts = Counter((f.frame_type or "unknown", f.filter or "-") for f in frames if f.status == "ok")
    sections.append("<h2>Frames</h2>" + _table(["type", "filter", "frames"],
                                               [[t, f, n] for (t, f), n in sorted(counts.items())]))
    failed = [f for f in frames if f.status != "ok"]
    sections.append(f"<h2>Frames that failed ({len(failed)})</h2>" + (
        _table(["file", "reason"], [[f.path, f.error] for f in failed]) if failed else "<p>None.</p>"))

    masters = [p for p in products if p["kind"].startswith("master_")]
    sections.append("<h2>Masters</h2>" + _table(
        ["master", "inputs", "rejected fraction", "noise", "hot pixels", "bad columns", "missing"],
        [[Path(p["path"]).name, p["quality"].get("n_inputs"), p["quality"].get("rejected_fraction"),
          p["quality"].get("noise"), p["quality"].get("hot_pixels"), p["quality"].get("bad_columns"),
          ",".join(p["missing"] or []) or "-"] for p in masters]))

    catalogs = [p for p in products if p["kind"] == "catalog"]
    measured = [dict(c["quality"], path=c["path"]) for c in catalogs]
    if measured:
        sections.append("<h2>Seeing, sky and zeropoints</h2>" + "".join(
            f"<figure>{_img(uri, label)}<figcaption>{html.escape(label)}</figcaption></figure>"
            for label, uri in _trend_plots(measured)))
        sections.append("<h2>Astrometry</h2>" + _table(
            ["catalogue", "status", "matches", "RMS (arcsec)", "zeropoint", "error"],
            [[Path(c["path"]).name, c["quality"].get("astrometry"), c["quality"].get("astrometry_matches"),
              c["quality"].get("astrometry_rms_arcsec"), c["quality"].get("zeropoint"),
              c["quality"].get("zeropoint_err")] for c in catalogs]))
        residuals = _residual_plot(catalogs)
        if residuals:
            sections.append(_img(residuals, "astrometric residual maps"))

    if config.thumbnails:
        for kind, title in (("master", "Master frames"), ("calibrated", "Calibrated images"), ("coadd", "Coadds")):
            chosen = [p for p in products if p["kind"] == kind or (kind == "master" and p["kind"].startswith("master_"))]
            if chosen:
                figures = "".join(f"<figure>{_img(thumbnail(p['path']), Path(p['path']).name, 160)}"
                                  f"<figcaption>{html.escape(Path(p['path']).name)}</figcaption></figure>"
                                  for p in chosen if Path(p["path"]).is_file())
                sections.append(f"<h2>{title}</h2><div class='thumbs'>{figures}</div>")

    run_rows = []
    for r in runs:
        energy = (r["cpu_core_hours"] or 0) * config.watts_per_core
        run_rows.append([r["id"], r["status"], r["wall_s"], r["cpu_core_hours"], r["peak_memory_mb"], energy,
                         r["scheduler"], r["workers"]])
    sections.append("<h2>Resources</h2>" + _table(
        ["run", "status", "wall (s)", "CPU core-hours", "peak memory (MB)", "energy (Wh)", "cluster", "workers"],
        run_rows) + f"<p>Energy estimate: CPU core-hours x {config.watts_per_core:g} W per busy core "
                    "(assumed; set <code>[report] watts_per_core</code>). Idle power is not counted.</p>")

    page = PAGE.format(title=html.escape(f"lenghu night report: {out.name}"), body="\n".join(sections))
    target = out / "report" / "index.html"
    write_bytes_atomic(target, page.encode("utf-8"))
    return target
