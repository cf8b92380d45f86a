#!/usr/bin/env bash
# Prepares a GPU benchmark run on the workplace's lent device machine (see bench/device.sh): puts the Vulkan
# loader (Debian's libvulkan1, which that machine may lack) and this machine's deno, xz-compressed (~31 MB; the
# device machine has no deno and no network), into .gl/, which .gitignore keeps out of git and the device
# tool's `carry` takes along. Run once per checkout, here, where apt and deno work.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.gl/' .gitignore || { echo "device_prep: .gl/ must be in .gitignore" >&2; exit 1; }
command -v deno >/dev/null || { echo "device_prep: no deno here (npm install -g deno@2.9.6)" >&2; exit 1; }
mkdir -p .gl /tmp/amd64/partial
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${o[@]}" update -qq
rm -f .gl/*.deb
(cd .gl && apt-get "${o[@]}" download -qq libvulkan1)
xz -T0 -6 -c "$(command -v deno)" > .gl/deno.xz.tmp && mv .gl/deno.xz.tmp .gl/deno.xz
echo "device_prep: $(du -sh .gl | cut -f1) in .gl/ ($(ls .gl | tr '\n' ' '))"
