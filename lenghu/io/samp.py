"""Send images and tables to SAMP applications (DS9, TOPCAT, Aladin) through a running hub.

SAMP through ``pyvo.samp`` (astropy's SAMP module, moved to pyvo when astropy
deprecated its own in 8.0). The hub is found from the standard lock file
(``~/.samp``, or ``SAMP_HUB``), or given; lenghu only ever sends, with a
non-callable client, so nothing listens on a port. Hubs and clients are on
localhost.

What goes out:

- a FITS image, cube or MEF: ``image.load.fits`` with the file's URL;
- a FITS table: ``table.load.fits``; a VOTable: ``table.load.votable``;
- another catalogue (Parquet, ECSV, CSV, HDF5 table) or a lenghu Zarr/HDF5
  image store is first converted to a VOTable or FITS file in lenghu's SAMP
  folder (``$XDG_CACHE_HOME/lenghu/samp``), which stays there: the receiving
  application reads the URL after lenghu has returned.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from lenghu.errors import FrameError

IMAGE_MTYPE = "image.load.fits"
FITS_TABLE_MTYPE = "table.load.fits"
VOTABLE_MTYPE = "table.load.votable"


class SampError(FrameError):
    """No hub, no receiving application, or a file SAMP cannot carry."""


@dataclass(frozen=True)
class SampMessage:
    """A SAMP notification: its mtype and parameters (all strings, as SAMP wants)."""

    mtype: str
    params: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"samp.mtype": self.mtype, "samp.params": dict(self.params)}


def samp_folder() -> Path:
    """Where converted copies for SAMP are kept."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    folder = base / "lenghu" / "samp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def message_for(path: Path, kind: str, fmt: str) -> SampMessage:
    """The message that loads ``path`` (a FITS image/table or a VOTable) in the receiver.

    Examples
    --------
    >>> message_for(Path("/data/m31.fits"), "image", "fits").mtype
    'image.load.fits'
    """
    path = Path(path).resolve()
    ident = f"lenghu-{uuid.uuid4().hex[:12]}"
    if kind == "table":
        mtype = VOTABLE_MTYPE if fmt == "votable" else FITS_TABLE_MTYPE
        return SampMessage(mtype, {"url": path.as_uri(), "table-id": ident, "name": path.name})
    return SampMessage(IMAGE_MTYPE, {"url": path.as_uri(), "image-id": ident, "name": path.name})


def sendable(path: str | Path) -> tuple[Path, SampMessage]:
    """A file a SAMP application can load for ``path``, converting it if needed, and its message."""
    from lenghu.convert.api import convert, input_kind

    path = Path(path)
    fmt, kind = input_kind(path)
    if kind == "snapshot":
        raise SampError(path, "SAMP has no message for particle snapshots (convert to a table first)")
    if (kind == "table" and fmt in ("votable", "fits")) or (kind != "table" and fmt in ("fits", "fits-gzip")):
        return path, message_for(path, kind, fmt)
    suffix = ".vot" if kind == "table" else ".fits"
    target = samp_folder() / f"{path.name}.{uuid.uuid4().hex[:8]}{suffix}"
    convert(path, target)
    return target, message_for(target, kind, "votable" if kind == "table" else "fits")


def send(
    path: str | Path,
    hub_params: Mapping[str, str] | None = None,
    recipient: str | None = None,
) -> list[str]:
    """Send ``path`` to the applications connected to a SAMP hub; return the client ids notified.

    Parameters
    ----------
    path : path
        An image, cube, MEF, catalogue, or a lenghu store of one.
    hub_params : mapping, optional
        The hub's lock-file values (``samp.hub.xmlrpc.url``, ``samp.secret``);
        default: the standard lock file.
    recipient : str, optional
        Send only to the client with this id or ``samp.name`` (e.g. ``topcat``).

    Raises
    ------
    SampError
        No hub, no receiver for the message, or nothing SAMP can carry.
    """
    from pyvo.samp import SAMPHubError, SAMPIntegratedClient, SAMPProxyError

    _, message = sendable(path)
    client = SAMPIntegratedClient(name="lenghu", description="lenghu: Lenghu observatory toolkit", callable=False)
    try:
        client.connect(hub_params=dict(hub_params) if hub_params else None)
    except (SAMPHubError, SAMPProxyError, OSError) as exc:
        raise SampError(path, f"no SAMP hub reachable (start TOPCAT, DS9 or Aladin, or a hub): {exc}") from exc
    try:
        subscribed = list(client.get_subscribed_clients(message.mtype))
        if recipient is not None:
            subscribed = [c for c in subscribed if c == recipient or _name(client, c) == recipient.lower()]
        if not subscribed:
            raise SampError(path, f"no connected application accepts {message.mtype}"
                                  + (f" under the name {recipient!r}" if recipient else ""))
        for client_id in subscribed:
            client.notify(client_id, message.as_dict())
        return subscribed
    finally:
        client.disconnect()


def hub_params_from_lockfile(lockfile: str | Path) -> dict[str, str]:
    """The hub parameters written in a SAMP lock file."""
    from pyvo.samp.lockfile_helpers import read_lockfile

    return dict(read_lockfile(str(lockfile)))


def _name(client, client_id: str) -> str:
    meta = client.get_metadata(client_id)
    return str(meta.get("samp.name", "")).lower()
