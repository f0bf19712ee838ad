"""The font for the kiosk's text: one that has Chinese glyphs (no GL).

VisPy's ``Text`` takes a face *name* and resolves it on Linux through
fontconfig (``vispy.ext.fontconfig.find_font``); a name fontconfig does not
know falls back to its default face, which on a plain Debian has no CJK
glyphs, and Chinese then comes out as empty boxes. So the kiosk asks
fontconfig (``fc-list :lang=zh family``) which installed families cover
Chinese and uses the first of a preferred list, or any. ``make setup``
installs Debian's ``fonts-wqy-microhei`` (tools/ensure_system_packages.sh).
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess

log = logging.getLogger(__name__)

PREFERRED = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC",
             "WenQuanYi Zen Hei", "AR PL UMing CN", "Droid Sans Fallback")

#: A face VisPy ships (Open Sans) with no CJK glyphs: what a missing font looks like.
NO_CJK_FACE = "OpenSans"


def cjk_families() -> list[str]:
    """Font families fontconfig knows that cover Chinese (``:lang=zh``); empty without fontconfig."""
    exe = shutil.which("fc-list")
    if exe is None:
        return []
    proc = subprocess.run([exe, ":lang=zh", "family"], capture_output=True, text=True, timeout=30)
    families = []
    for line in proc.stdout.splitlines():
        for name in line.split(","):
            name = name.strip()
            if name and name not in families:
                families.append(name)
    return families


@functools.lru_cache(maxsize=1)
def cjk_face() -> str | None:
    """The face name to give VisPy for text with Chinese (None, with a warning, when no such font is installed)."""
    families = cjk_families()
    for name in PREFERRED:
        if name in families:
            return name
    if families:
        return families[0]
    log.warning("no font with Chinese glyphs is installed: Chinese captions will show as boxes "
                "(install fonts-wqy-microhei: `make setup`)")
    return None
