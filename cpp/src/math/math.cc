// The public elementwise vector math (logitkit/math.h), through the active backend's math slot.
// Kernels live in math_kernels-inl.h.
#include "logitkit/math.h"

#include "runtime/kernel_table.h"

namespace logitkit {

void vexp(const float* x, float* y, size_t n) { kernels().math.get<float>().exp(x, y, n); }
void vexp(const double* x, double* y, size_t n) { kernels().math.get<double>().exp(x, y, n); }
void vlog(const float* x, float* y, size_t n) { kernels().math.get<float>().log(x, y, n); }
void vlog(const double* x, double* y, size_t n) { kernels().math.get<double>().log(x, y, n); }
void vlog1p(const float* x, float* y, size_t n) { kernels().math.get<float>().log1p(x, y, n); }
void vlog1p(const double* x, double* y, size_t n) { kernels().math.get<double>().log1p(x, y, n); }

}  // namespace logitkit
