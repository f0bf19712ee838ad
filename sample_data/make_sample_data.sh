#!/usr/bin/env bash
# Remake sample_data/ exactly (same seeds, same options, same bytes).
# Run from the repository root: `make sample-data` (or bash sample_data/make_sample_data.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
LENGHU=${LENGHU:-.venv/bin/lenghu}
rm -rf sample_data/night sample_data/cosmic_web

# A tiny WFST night: all 9 CCDs at 1/36 of their size per side (0.333"/pixel kept),
# 3 biases, 2 darks, 2 dome flats per filter, 3 dithered 30 s exposures in r and in g.
"$LENGHU" simulate night sample_data/night --instrument wfst --scale 1/36 --seed 20251120 \
    --biases 3 --darks 2 --flats 2 --science 3 --filters r,g --compress --no-truth-images --quiet
# The truth keeps the plan, star lists and cosmic-ray masks; no truth images (tests make their own).

# A cosmic web of 56^3 = 175,616 particles in a 100 Mpc/h box, 3 snapshots from z = 3 to z = 0.
"$LENGHU" simulate cosmic-web sample_data/cosmic_web --particles 175616 --snapshots 3 \
    --redshift-start 3 --box 100 --seed 20251120 --compress --quiet

du -sh sample_data
