#!/usr/bin/env bash
# Remove a Studio installed by install.sh. Your images, library and settings are kept.
set -euo pipefail
prefix="${PREFIX:-$HOME/.local}"
rm -rf "$prefix/lib/studio" "$prefix/bin/studio" "$prefix/share/applications/studio.desktop" \
       "$prefix/share/icons/hicolor/256x256/apps/studio.png"
echo "Studio removed (your library and settings are untouched)."
