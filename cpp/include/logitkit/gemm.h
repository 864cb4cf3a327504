// gemm of the C++ API: C = alpha A B (+ C) over caller-owned strided matrices, with logitkit's own
// register-blocked micro-kernel for every ISA (the one behind linear_cross_entropy).
#pragma once

#include "logitkit/export.h"
#include "logitkit/view.h"

namespace logitkit {

struct GemmOptions {
  double alpha = 1.0;       // finite
  bool accumulate = false;  // C += alpha A B instead of C = alpha A B
};

// a (M, K), b (K, N), c (M, N): 2-D views with any strides (a transpose is a view with its
// strides swapped; zero strides broadcast), c must not overlap a or b (an Error naming "c").
// Accumulates in T; the sum over K is taken in a fixed order, so results do not depend on the
// thread count. Defined for T = float, double.
template <class T>
void gemm(InputView<T> /*a*/, InputView<T> /*b*/, ArrayView<T> /*c*/, const GemmOptions& /*options*/ = {}) {
  static_assert(detail::kIsElement<T>, "logitkit::gemm: T must be float or double");
}

template <>
LOGITKIT_API void gemm<float>(InputView<float>, InputView<float>, ArrayView<float>, const GemmOptions&);
template <>
LOGITKIT_API void gemm<double>(InputView<double>, InputView<double>, ArrayView<double>, const GemmOptions&);

// bfloat16 a and b (their bits, as uint16_t), float32 c and accumulation: on the CPU's bfloat16
// dot product where the active ISA has one (avx512bf16: vdpbf16ps, products exact, bfloat16
// subnormals read as 0), elsewhere on the float32 kernel with the values widened while packing
// (exactly gemm<float> of the widened values). The two differ by float32 rounding only: they sum
// the products in a different order. Same rules for shapes, strides and overlap as gemm.
LOGITKIT_API void gemm_bf16(ArrayView<const uint16_t> a, ArrayView<const uint16_t> b, ArrayView<float> c,
                            const GemmOptions& options = {});

}  // namespace logitkit
