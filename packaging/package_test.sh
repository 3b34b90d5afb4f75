#!/usr/bin/env bash
# Build the package, unpack it somewhere fresh, and check it as a user would:
# smoke test in a clean environment (env -i, no venv on PATH), install/uninstall under a temporary
# prefix, then the real window under Xvfb generating once, with a screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash packaging/build.sh
archive=$(ls -t dist/studio-*-linux-*.tar.gz | head -1)
tmp=$(mktemp -d)
trap 'kill ${xvfb_pid:-} 2>/dev/null || true; rm -rf "$tmp"' EXIT
tar -xzf "$archive" -C "$tmp"
dir=$(ls -d "$tmp"/studio-*/)
clean_env=(env -i HOME="$tmp/home" PATH=/usr/bin:/bin LANG=C.UTF-8)
mkdir -p "$tmp/home"

echo "== version and smoke test (clean environment)"
"${clean_env[@]}" "$dir/studio-launcher" --version
"${clean_env[@]}" "$dir/studio-launcher" --smoke-test
log=$(find "$tmp/home" -name studio.log | head -1)
test -n "$log" && grep -q "studio" "$log" || { echo "package-test: the packaged build wrote no log"; exit 1; }
echo "log: ${log#"$tmp/home/"}"

echo "== install / uninstall under a temporary prefix"
"${clean_env[@]}" PREFIX="$tmp/prefix" bash "$dir/install.sh"
test -x "$tmp/prefix/bin/studio" && test -f "$tmp/prefix/share/applications/studio.desktop"
grep -q "Exec=$tmp/prefix/lib/studio/studio run" "$tmp/prefix/share/applications/studio.desktop"
"${clean_env[@]}" "$tmp/prefix/bin/studio" --version
"${clean_env[@]}" PREFIX="$tmp/prefix" bash "$dir/uninstall.sh"
test ! -e "$tmp/prefix/bin/studio"

echo "== the real window under Xvfb"
command -v Xvfb >/dev/null || { echo "package-test: Xvfb is missing (make system-deps)"; exit 1; }
display=":$((90 + RANDOM % 9))"
Xvfb "$display" -screen 0 1600x900x24 -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
sleep 2
shots="${STUDIO_SCREENSHOT_DIR:-build/package-test}"
mkdir -p "$shots"
"${clean_env[@]}" DISPLAY="$display" QT_QPA_PLATFORM=xcb "$dir/studio-launcher" run \
    --autotest-screenshot "$shots/package-screenshot.png"
.venv/bin/python - "$shots/package-screenshot.png" <<'PYEOF'
import sys
import numpy as np
from PIL import Image
im = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.float32)
assert im.shape[0] >= 600 and im.shape[1] >= 1000, im.shape
assert im.std() > 10, "the screenshot is blank"
print(f"screenshot {sys.argv[1]}: {im.shape[1]}x{im.shape[0]}")
PYEOF
echo "package-test passed: $archive ($(du -sh "$archive" | cut -f1)), bundle $(du -sh "$dir/studio" | cut -f1)"
