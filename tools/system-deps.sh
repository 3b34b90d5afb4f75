#!/usr/bin/env bash
# Debian/Ubuntu packages the studio's window (PySide6/xcb) and its real-window tests (Xvfb) need.
# Installs what is missing when run as root (or with passwordless sudo); otherwise says what to run.
set -u
PKGS="libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 libglib2.0-0
      libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0
      libxcb-xinerama0 libxcb-xkb1 libxcb-cursor0 libxcb-xfixes0 xvfb xauth"
command -v dpkg-query >/dev/null || { echo "system-deps: not a Debian system; install Qt 6's xcb libraries and Xvfb yourself"; exit 0; }
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "system-deps: installing$missing"
if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
  echo "system-deps: please run: sudo apt-get install -y$missing" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null \
  || { echo "system-deps: apt-get failed; please install:$missing" >&2; exit 1; }
