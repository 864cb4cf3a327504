// Bindings for the stablemax family (see python/logitkit/stablemax.py for the public API). Arrays
// arrive validated and allocated by the Python layer.
#include "bind_common.h"
#include "logitkit/stablemax.h"

namespace logitkit_py {
namespace {

template <class T>
void forward(const py::array& x, const py::array& out, int axis, double temperature, bool log) {
  auto xv = view_of<const T>(x, "x", false);
  auto yv = view_of<T>(out, "out", true);
  logitkit::StablemaxOptions options;
  options.temperature = temperature;
  py::gil_scoped_release release;
  if (log) {
    logitkit::log_stablemax<T>(xv, yv, axis, options);
  } else {
    logitkit::stablemax<T>(xv, yv, axis, options);
  }
}

template <class T>
void backward(const py::array& x, const py::array& dy, const py::array& out, int axis, double temperature,
              bool log) {
  auto xv = view_of<const T>(x, "x", false);
  auto dv = view_of<const T>(dy, "dy", false);
  auto ov = view_of<T>(out, "out", true);
  logitkit::StablemaxOptions options;
  options.temperature = temperature;
  py::gil_scoped_release release;
  if (log) {
    logitkit::log_stablemax_backward<T>(xv, dv, ov, axis, options);
  } else {
    logitkit::stablemax_backward<T>(xv, dv, ov, axis, options);
  }
}

}  // namespace

void bind_stablemax(py::module_& m) {
  for (bool log : {false, true}) {
    m.def(
        log ? "log_stablemax" : "stablemax",
        [log](const py::array& x, const py::array& out, int axis, double temperature) {
          is_f32(x) ? forward<float>(x, out, axis, temperature, log) : forward<double>(x, out, axis, temperature, log);
        },
        py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
    m.def(
        log ? "log_stablemax_backward" : "stablemax_backward",
        [log](const py::array& x, const py::array& dy, const py::array& out, int axis, double temperature) {
          is_f32(x) ? backward<float>(x, dy, out, axis, temperature, log)
                    : backward<double>(x, dy, out, axis, temperature, log);
        },
        py::arg("x"), py::arg("dy"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
  }
}

}  // namespace logitkit_py
