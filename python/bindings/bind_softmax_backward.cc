// Bindings for softmax / log_softmax backward (plain and masked). Arrays arrive validated and
// allocated by python/logitkit/softmax_backward.py; this layer only wraps pointers and releases
// the GIL.
#include <cstdint>

#include "bind_common.h"
#include "logitkit/softmax_backward.h"

namespace logitkit_py {
namespace {

template <class T>
void backward_impl(const py::array& y, const py::array& dy, const py::object& mask, const py::array& out, int axis,
                   double temperature, bool log) {
  auto yv = view_of<const T>(y, "y", false);
  auto dyv = view_of<const T>(dy, "dy", false);
  auto dxv = view_of<T>(out, "out", true);
  const bool masked = !mask.is_none();
  logitkit::ArrayView<const uint8_t> mv;
  if (masked) mv = mask_view(mask.cast<py::array>(), yv, "y");
  logitkit::SoftmaxOptions options;
  options.temperature = temperature;
  py::gil_scoped_release release;
  if (masked) {
    log ? logitkit::masked_log_softmax_backward<T>(yv, dyv, mv, dxv, axis, options)
        : logitkit::masked_softmax_backward<T>(yv, dyv, mv, dxv, axis, options);
  } else {
    log ? logitkit::log_softmax_backward<T>(yv, dyv, dxv, axis, options)
        : logitkit::softmax_backward<T>(yv, dyv, dxv, axis, options);
  }
}

}  // namespace

void bind_softmax_backward(py::module_& m) {
  m.def(
      "softmax_backward",
      [](const py::array& y, const py::array& dy, const py::object& mask, const py::array& out, int axis,
         double temperature, bool log) {
        is_f32(y) ? backward_impl<float>(y, dy, mask, out, axis, temperature, log)
                  : backward_impl<double>(y, dy, mask, out, axis, temperature, log);
      },
      py::arg("y"), py::arg("dy"), py::arg("mask"), py::arg("out"), py::arg("axis"), py::arg("temperature"),
      py::arg("log"));
}

}  // namespace logitkit_py
