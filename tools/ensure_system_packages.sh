#!/usr/bin/env bash
# Install the Debian packages lenghu's tests, demo and benchmarks call, only if missing.
# Idempotent: prints nothing and does nothing when all are present.
set -euo pipefail
PACKAGES=(
  fitsverify source-extractor swarp            # peers and FITS validation
  libosmesa6 libgl1-mesa-dri libegl1 libegl-mesa0 libgl1   # headless OpenGL (Mesa)
  xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1   # virtual display for Qt windows
  stilts libcfitsio-bin                        # votlint (VOTable checks); fpack/funpack (.fz convert)
  saods9                                       # DS9, to check converted files open in it
  chromium                                     # headless browser, to check the night report
  fonts-wqy-microhei                           # a CJK font, for the kiosk's Chinese captions
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "lenghu: installing system packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "lenghu: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
