// Bindings for masked softmax / log_softmax. Arrays arrive validated and allocated by
// python/logitkit/masked_softmax.py; the mask (bool or a uint8 view of one) is broadcast to x here
// with stride-0 axes, never materialized. This layer only wraps pointers and releases the GIL.
#include <cstdint>

#include "bind_common.h"
#include "logitkit/masked_softmax.h"

namespace logitkit_py {
namespace {

template <class T>
void masked_impl(const py::array& x, const py::array& mask, const py::array& out, int axis, double temperature,
                 bool log) {
  auto xv = view_of<const T>(x, "x", false);
  auto mv = mask_view(mask, xv, "x");
  auto yv = view_of<T>(out, "out", true);
  logitkit::SoftmaxOptions options;
  options.temperature = temperature;
  py::gil_scoped_release release;
  if (log) {
    logitkit::masked_log_softmax<T>(xv, mv, yv, axis, options);
  } else {
    logitkit::masked_softmax<T>(xv, mv, yv, axis, options);
  }
}

}  // namespace

void bind_masked_softmax(py::module_& m) {
  for (bool log : {false, true}) {
    m.def(
        log ? "masked_log_softmax" : "masked_softmax",
        [log](const py::array& x, const py::array& mask, const py::array& out, int axis, double temperature) {
          is_f32(x) ? masked_impl<float>(x, mask, out, axis, temperature, log)
                    : masked_impl<double>(x, mask, out, axis, temperature, log);
        },
        py::arg("x"), py::arg("mask"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
  }
}

}  // namespace logitkit_py
