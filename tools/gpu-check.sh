#!/usr/bin/env bash
# The fast path on a real NVIDIA GPU, in about 10 minutes on one H100 (issue #29's figures):
#   1. the CUDA tests (tests/engine/test_fast_cuda.py; skipped on machines without CUDA),
#   2. `studio bench speed` — the fast path vs bare diffusers, alternating in one run — for full-size
#      random-weight SD 1.5 (512², 30 steps), SDXL (1024², 30 steps) and FLUX.1-dev (1024², 28 steps,
#      bf16): it/s, s/image, peak memory, share of the GPU's dense fp16/bf16 peak, NaN/black images,
#      compile warm-up,
#   3. SD 1.5 again in a new process: the compile warm-up with the compile cache already filled (a later
#      start of the studio); and with draft speed (step caching) on top.
# SD 1.5's share of the peak is its UNet at batch 2 (one CFG step) per step, the issue's ≥ 40 % target.
# Each result is one JSON line in $OUT_DIR (default ./gpu-check-out) and a summary line on stdout.
#
# Needs a Python with a CUDA build of torch, diffusers and the studio's dependencies: PYTHON=… (default:
# .venv/bin/python, else python3). Run from the repository root:  bash tools/gpu-check.sh
set -uo pipefail

PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT_DIR=${OUT_DIR:-gpu-check-out}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1
# a fresh compile cache for the first-run figure; the second SD 1.5 run reuses it (a warm start)
export STUDIO_HOME=${STUDIO_HOME:-$(mktemp -d /tmp/studio-gpu-check.XXXXXX)}

"$PY" - <<'EOF' || { echo "gpu-check: no CUDA GPU visible to $PY (torch.cuda.is_available() is False)"; exit 2; }
import torch, diffusers, sys
assert torch.cuda.is_available(), "no CUDA"
p = torch.cuda.get_device_properties(0)
print(f"gpu-check: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}; "
      f"torch {torch.__version__} (CUDA {torch.version.cuda}), diffusers {diffusers.__version__}")
EOF
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/gpu-check: driver: /'

status=0
step() {  # step NAME TIMEOUT_S ARGS… : one bench, its JSON saved and summarised
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    if timeout "$limit" "$PY" -m studio bench "$@" --json >"$OUT_DIR/$name.json" 2>"$OUT_DIR/$name.err"; then
        "$PY" - "$OUT_DIR/$name.json" "$name" $((SECONDS - t0)) <<'EOF'
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
name, took = sys.argv[2], sys.argv[3]
if "bare" not in d:  # bench unet
    print(f"{name}: step {d['step_s']} s, peak {d['peak_mb']} MB ({took} s)")
    sys.exit(0)
b, f = d["bare"], d["fast"]
share = lambda p: "—" if p["peak_share"] is None else f"{p['peak_share']:.0%}"
print(f"{name}: bare {b['it_s']} it/s {b['s_per_image']} s/img {b['peak_mb']} MB {share(b)} of peak | "
      f"fast {f['it_s']} it/s {f['s_per_image']} s/img {f['peak_mb']} MB {share(f)} of peak | "
      f"×{d['speedup_it_s']} it/s | compile warm-up {d['compile_warmup_s']} s | "
      f"bad images {b['bad_images']}+{f['bad_images']} | pixel diff {d['pixel_diff']} ({took} s)")
EOF
    else
        echo "$name: FAILED (exit $?); see $OUT_DIR/$name.err"; tail -3 "$OUT_DIR/$name.err"; status=1
    fi
}

timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/engine/test_fast_cuda.py 2>&1 | tail -5 || status=1
step sd15 120 speed --arch sd15 --size 512 --steps 30 --runs 3
step sd15-warm-start 60 speed --arch sd15 --size 512 --steps 30 --runs 1
step sd15-draft 60 speed --arch sd15 --size 512 --steps 30 --runs 2 --parts recommended,draft
step sdxl 140 speed --arch sdxl --size 1024 --steps 30 --runs 2
step flux-dev 180 speed --arch flux-dev --size 1024 --steps 28 --runs 2 --dtype bfloat16
echo "gpu-check: JSON in $OUT_DIR; record the figures in docs/benchmarks.md (device, driver, torch, diffusers, command)"
exit $status
