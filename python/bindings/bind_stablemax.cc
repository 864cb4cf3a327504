// Bindings for the stablemax family (see python/logitkit/stablemax.py for the public API), plus
// the vector log/log1p accuracy hooks. Arrays arrive validated and allocated by the Python layer.
#include "bind_common.h"
#include "logitkit/math.h"
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

template <class T>
void elementwise(const py::array& x, const py::array& out, bool log1p) {
  auto xv = view_of<const T>(x, "x", false);
  auto ov = view_of<T>(out, "out", true);
  py::gil_scoped_release release;
  if (log1p) {
    logitkit::vlog1p(xv.data, ov.data, static_cast<size_t>(xv.size()));
  } else {
    logitkit::vlog(xv.data, ov.data, static_cast<size_t>(xv.size()));
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
  // Accuracy hooks for tests: elementwise log / log1p of a contiguous array with the active backend.
  for (bool log1p : {false, true}) {
    m.def(
        log1p ? "_log1p" : "_log",
        [log1p](const py::array& x, const py::array& out) {
          if (!(x.flags() & py::array::c_style) || !(out.flags() & py::array::c_style) || x.size() != out.size())
            throw py::value_error("x and out must be C-contiguous and of equal size");
          is_f32(x) ? elementwise<float>(x, out, log1p) : elementwise<double>(x, out, log1p);
        },
        py::arg("x"), py::arg("out"));
  }
}

}  // namespace logitkit_py
