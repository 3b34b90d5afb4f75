#!/usr/bin/env bash
# Build dist/studio-<version>-linux-x86_64.tar.gz from the current tree (PyInstaller one-folder).
# Uses the project's .venv (make setup) plus PyInstaller; the torch installed there decides the
# variant (CPU by default; a CUDA torch gives a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
start=$(date +%s)
version=$($PY -c "import studio; print(studio.__version__)")
arch=$(uname -m)
name="studio-$version-linux-$arch"
$PY -m pip install -q "pyinstaller>=6.10,<7"

# Files from wheels the app reads but never imports, and the licence list, go into resources/.
extra="$PWD/build/extra"
rm -rf "$extra" && mkdir -p "$extra/resources"
$PY - "$extra/resources" <<'PYEOF'
import shutil, sys
from pathlib import Path
out = Path(sys.argv[1])
from studio.engine.clip_vocab import vocab_path
shutil.copy(vocab_path(), out / vocab_path().name)
try:
    from studio_plugins.controlnet.hed import weights_path
    shutil.copy(weights_path(), out / weights_path().name)
except Exception as exc:  # HED is optional in a build
    print("build: no HED weights bundled:", exc)
PYEOF
$PY packaging/licenses.py "$extra/resources/THIRD_PARTY_LICENSES.txt"

STUDIO_BUILD_EXTRA="$extra" $PY -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath build/dist --workpath build/work packaging/studio.spec

stage="build/stage/$name"
rm -rf build/stage && mkdir -p "$stage"
cp -a build/dist/studio "$stage/studio"
cp packaging/install.sh packaging/uninstall.sh packaging/studio.desktop "$stage/"
cp resources/icons/studio.png "$stage/studio.png"
cat > "$stage/studio-launcher" <<'SH'
#!/usr/bin/env bash
exec "$(cd "$(dirname "$0")" && pwd)/studio/studio" "$@"
SH
chmod +x "$stage/studio-launcher"
cat > "$stage/README.txt" <<TXT
Studio $version for Linux ($arch)
Run without installing:  ./studio-launcher        (or ./studio-launcher --smoke-test)
Install for this user:   ./install.sh             (app menu entry; uninstall.sh removes it)
TXT
mkdir -p dist
tar -C build/stage -cf - "$name" | gzip -1 > "dist/$name.tar.gz"
end=$(date +%s)
echo "built dist/$name.tar.gz: bundle $(du -sh "$stage/studio" | cut -f1), archive $(du -sh "dist/$name.tar.gz" | cut -f1), $((end - start)) s"
