#!/usr/bin/env bash
# GPU benchmarks in one call of the workplace's device tool (a lent H200; no deno, no network there):
#   here, once:  bash bench/device_prep.sh
#   device run:  command "bash bench/device.sh step attention transformer_block matmul", carry [".gl"], timeout_s ≤ 600
# (`step`: the AE, diffusion, latent-solver and pixel-solver training steps, `default` and the `large` Euler shape;
# `emulate_`: inference per generated state; `metrics`: evaluation throughput.)
# Each argument is one `deno task bench --filter` (none: every benchmark). Prints the tables and copies them and
# the bench/results rows to $OUT. LOLA_REQUIRE_GPU=1: a missing NVIDIA Vulkan driver is an error, not a silent
# run on a CPU adapter.
set -euo pipefail
out="${OUT:-/tmp/lola-device}"
mkdir -p "$out"
[ -f .gl/deno.xz ] || { echo "device.sh: .gl/deno.xz missing: run bench/device_prep.sh here and carry .gl" >&2; exit 1; }
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
python3 -c 'import lzma, shutil; shutil.copyfileobj(lzma.open(".gl/deno.xz"), open("/tmp/deno", "wb"))'
chmod +x /tmp/deno
export LOLA_REQUIRE_GPU=1 XDG_RUNTIME_DIR=/tmp DENO_NO_UPDATE_CHECK=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
filters=("$@")
[ ${#filters[@]} -gt 0 ] || filters=("")
for f in "${filters[@]}"; do
  /tmp/deno run -A bench/main.ts ${f:+--filter "$f"} 2>&1 | tee -a "$out/bench.txt"
done
cp bench/results/*.jsonl "$out/"
