// Bindings for the entropy family (see python/logitkit/entropy.py for the public API). Arrays
// arrive validated and allocated by the Python layer; this layer wraps pointers and drops the GIL.
#include <string>

#include "bind_common.h"
#include "logitkit/entropy.h"

namespace logitkit_py {
namespace {

template <class T>
void entropy_impl(const py::array& x, const py::array& out, int axis, double temperature) {
  auto xv = view_of<const T>(x, "x", false);
  auto ov = view_of<T>(out, "out", true);
  logitkit::EntropyOptions options;
  options.temperature = temperature;
  py::gil_scoped_release release;
  logitkit::entropy<T>(xv, ov, axis, options);
}

template <class T>
double collapse_impl(const py::array& x, int axis, logitkit::CollapseDtype dtype) {
  auto xv = view_of<const T>(x, "x", false);
  py::gil_scoped_release release;
  return logitkit::collapse_fraction<T>(xv, axis, dtype);
}

logitkit::CollapseDtype parse_dtype(const std::string& name) {
  using D = logitkit::CollapseDtype;
  if (name == "float64") return D::kFloat64;
  if (name == "float32") return D::kFloat32;
  if (name == "float16") return D::kFloat16;
  if (name == "bfloat16") return D::kBFloat16;
  throw py::value_error("dtype: expected float64, float32, float16 or bfloat16; got '" + name + "'");
}

}  // namespace

void bind_entropy(py::module_& m) {
  m.def(
      "entropy",
      [](const py::array& x, const py::array& out, int axis, double temperature) {
        is_f32(x) ? entropy_impl<float>(x, out, axis, temperature) : entropy_impl<double>(x, out, axis, temperature);
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
  m.def(
      "collapse_fraction",
      [](const py::array& x, int axis, const std::string& dtype) {
        const auto d = parse_dtype(dtype);
        return is_f32(x) ? collapse_impl<float>(x, axis, d) : collapse_impl<double>(x, axis, d);
      },
      py::arg("x"), py::arg("axis"), py::arg("dtype"));
}

}  // namespace logitkit_py
