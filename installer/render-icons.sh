#!/bin/sh
# Render assets/persnap.svg into the PNG sizes the Linux package installs
# (hicolor theme) and the Windows .ico embedded in persnap.exe and used by
# the setup program. Needs rsvg-convert (librsvg2-bin) and icotool
# (icoutils). The results are committed; run this after changing the SVG.
set -eu
cd "$(dirname "$0")/../assets"
for size in 16 24 32 48 64 128 256 512; do
  rsvg-convert -w "$size" -h "$size" persnap.svg -o "icons/persnap-$size.png"
done
icotool -c -o persnap.ico icons/persnap-16.png icons/persnap-24.png icons/persnap-32.png \
  icons/persnap-48.png icons/persnap-64.png icons/persnap-128.png -r icons/persnap-256.png
