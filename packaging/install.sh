#!/usr/bin/env bash
# Install this Studio build for the current user under ~/.local (no root needed).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix="${PREFIX:-$HOME/.local}"
dest="$prefix/lib/studio"
mkdir -p "$dest" "$prefix/bin" "$prefix/share/applications" "$prefix/share/icons/hicolor/256x256/apps"
rm -rf "$dest.new" && cp -a "$here/studio" "$dest.new" && rm -rf "$dest" && mv "$dest.new" "$dest"
ln -sf "$dest/studio" "$prefix/bin/studio"
cp "$here/studio.png" "$prefix/share/icons/hicolor/256x256/apps/studio.png"
sed "s|@BIN@|$dest/studio|" "$here/studio.desktop" > "$prefix/share/applications/studio.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$prefix/share/applications" || true
echo "Studio installed in $dest; start it from the app menu or with: $prefix/bin/studio"
