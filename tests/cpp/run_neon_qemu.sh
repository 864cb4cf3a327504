#!/usr/bin/env bash
# Cross-compiles logitkit and its GoogleTest suite for AArch64 and runs them under qemu-aarch64,
# so the NEON backend (cpp/src/simd/vec_neon-inl.h) is built and tested on an x86 machine.
# Needs: g++-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libgtest-dev (for /usr/src/googletest).
# Usage: tests/cpp/run_neon_qemu.sh [build-dir]   (default build/aarch64)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/aarch64}
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

for tool in aarch64-linux-gnu-g++ qemu-aarch64 ninja; do
  command -v "$tool" >/dev/null || { echo "run_neon_qemu.sh: $tool not found" >&2; exit 1; }
done

# Emulation is ~10-50x slower than native: the exp sweep checks every 1999th float32 pattern
# (2.1M inputs, plus every 285th near the range boundaries) and 2^16 float64 samples (the long
# double reference is software quad precision on AArch64).
# The `aarch64` preset of CMakePresets.json (toolchain file, qemu as CMAKE_CROSSCOMPILING_EMULATOR,
# the reduced sweep sizes).
cmake --preset aarch64 -B "$build" -Wno-deprecated
cmake --build "$build" -j "$jobs"

# The binaries must really be AArch64 and run through qemu (CMAKE_CROSSCOMPILING_EMULATOR).
aarch64-linux-gnu-readelf -h "$build/tests/cpp/test_softmax" | grep -q AArch64 || { echo "not an AArch64 build" >&2; exit 1; }
qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/tests/cpp/test_dispatch" --gtest_filter=Dispatch.Avail* --gtest_brief=1

ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 900
# The measured accuracy of the exp per ISA under emulation, for the log.
grep -h '^\[ exp' "$build"/Testing/Temporary/LastTest*.log
