// One family's slot in the dispatch table, apart from the table itself: a family's generated
// translation units fill their slot through this header alone, so that editing another family's
// slot does not recompile them.
#pragma once

namespace logitkit {

// One family's kernels for both float types: table.softmax.get<T>().
template <template <class> class Kernels>
struct PerType {
  Kernels<float> f32;
  Kernels<double> f64;
  template <class T>
  const Kernels<T>& get() const {
    if constexpr (sizeof(T) == 4) {
      return f32;
    } else {
      return f64;
    }
  }
};

}  // namespace logitkit
