// The route family's slot in the dispatch table: the per-token router (route_kernels-inl.h).
// ISA-neutral: included by the driver (route.cc) and by runtime/kernel_table.h.
#pragma once
#include <cstddef>
#include <cstdint>

#include "logitkit/route.h"

namespace logitkit {

// Everything about a call that is the same for every token, resolved by the driver.
template <class T>
struct RouteConfig {
  size_t experts = 0;
  size_t k = 0;
  RouteOptions options;
  T softcap = 0;          // 0: off
  T temperature = 1;      // x -> x / temperature (division, as the references do)
  const T* bias = nullptr;  // experts values, contiguous, or null
  size_t n_group = 1, topk_group = 1;
};

// One token's operands: rows of `experts` values (mask/force/noise_std may be null: all allowed,
// none forced, options.noise_std) and the k outputs.
template <class T>
struct RouteToken {
  const T* x;
  const uint8_t* mask;
  const uint8_t* force;
  const T* noise_std;
  uint64_t token;  // the row's index in the whole problem: the noise's counter
  T* weights;
  int32_t* ids;
};

// Per-thread scratch route_token needs for a config.
template <class T>
constexpr size_t route_scratch_bytes(size_t experts, size_t k, size_t n_group) {
  return k * sizeof(double) + experts * (3 * sizeof(T) + 1) + n_group * (sizeof(T) + 1);
}

template <class T>
struct RouteKernels {
  void (*route_token)(const RouteConfig<T>& config, const RouteToken<T>& token, void* scratch);
  // `rows` tokens without mask, forced experts or per-expert noise scales: row r of x at
  // x + r * ldx, its outputs at weights + r * ldw and ids + r * ldi; tokens first_token + r.
  void (*route_rows)(const RouteConfig<T>& config, const T* x, ptrdiff_t ldx, size_t rows, uint64_t first_token,
                     T* weights, ptrdiff_t ldw, int32_t* ids, ptrdiff_t ldi, void* scratch);
};

}  // namespace logitkit
