// The moe family's slot in the dispatch table: the combine of unpermute and Self-Contrast MoE's
// contrastive logits (moe_kernels-inl.h). ISA-neutral: included by moe.cc and runtime/kernel_table.h.
#pragma once
#include <cstddef>

namespace logitkit {

template <class T>
struct MoeKernels {
  // out[i] = sum over j < count, in order, of w[j] rows[j][i] (count >= 1).
  void (*combine)(const T* const* rows, const T* w, size_t count, T* out, size_t n);
  // out[i] = (1 + beta) strong[i] - beta weak[i] where strong[i] >= threshold, else -inf.
  void (*contrast)(const T* strong, const T* weak, T* out, size_t n, T threshold, T beta);
};

}  // namespace logitkit
