// Runtime controls: which SIMD backend (ISA) runs the kernels and how many threads they use.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "logitkit/export.h"

namespace logitkit {

// Name of the active backend: "scalar", "avx2", "avx512", "avx512bf16" (avx512 plus the bfloat16
// dot product, used by gemm_bf16 and bfloat16 linear_cross_entropy) or "neon".
LOGITKIT_API const char* isa();

// Backends compiled into this build that the running CPU supports, best last.
LOGITKIT_API std::vector<std::string> available_isas();

// Switches the active backend for all later calls (process-wide).
// Throws logitkit::Error (kind kUnsupportedIsa) for an unknown name or one this CPU cannot run.
// At load time the environment variable LOGITKIT_ISA selects the backend the same way; an invalid
// value there makes the first kernel call throw instead of silently falling back.
LOGITKIT_API void set_isa(const std::string& name);

// Threads used by kernels (the caller's thread counts as one). Defaults to LOGITKIT_NUM_THREADS
// when set, else the hardware concurrency. Results are bitwise identical for every value:
// work is partitioned by problem size, never by thread count.
LOGITKIT_API int get_num_threads();
LOGITKIT_API void set_num_threads(int n);

// Bytes of the last-level cache one core sees, read once: on Linux the highest cache level of
// cpu0 in sysfs, else sysconf, else 32 MiB. softmax, log_softmax and their backward write outputs
// at least this large with non-temporal stores: nothing would still be cached for the consumer,
// and it saves the read-for-ownership of every line.
LOGITKIT_API size_t last_level_cache_bytes();

}  // namespace logitkit
