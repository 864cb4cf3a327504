// Cache sizes the drivers plan with (cache_sizes.cc). last_level_cache_bytes() is public
// (logitkit/runtime.h).
#pragma once
#include <cstddef>

namespace logitkit {

// Bytes of one core's L2 (1 MiB when unknown).
size_t l2_cache_bytes();

}  // namespace logitkit
