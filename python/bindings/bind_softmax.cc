// Bindings for softmax, log_softmax and logsumexp. Arrays arrive already validated and allocated
// by python/logitkit/softmax.py; this layer only wraps pointers and releases the GIL.
#include <string>

#include "bind_common.h"
#include "logitkit/softmax.h"

namespace logitkit_py {
namespace {

logitkit::SoftmaxAlgorithm parse_algorithm(const std::string& name) {
  using A = logitkit::SoftmaxAlgorithm;
  if (name == "auto") return A::kAuto;
  if (name == "three_pass_reload") return A::kThreePassReload;
  if (name == "three_pass_recompute") return A::kThreePassRecompute;
  if (name == "two_pass") return A::kTwoPass;
  if (name == "online") return A::kOnline;
  throw py::value_error("algorithm: expected one of 'auto', 'three_pass_reload', "
                        "'three_pass_recompute', 'two_pass', 'online'; got '" + name + "'");
}

template <class T>
void softmax_like(const py::array& x, const py::array& out, int axis, double temperature,
                  const std::string& algorithm, bool log) {
  auto xv = view_of<const T>(x, "x", false);
  auto yv = view_of<T>(out, "out", true);
  logitkit::SoftmaxOptions options;
  options.temperature = temperature;
  options.algorithm = parse_algorithm(algorithm);
  py::gil_scoped_release release;
  if (log) {
    logitkit::log_softmax<T>(xv, yv, axis, options);
  } else {
    logitkit::softmax<T>(xv, yv, axis, options);
  }
}

template <class T>
void logsumexp_impl(const py::array& x, const py::array& out, int axis, const py::object& b,
                    const py::object& sign) {
  auto xv = view_of<const T>(x, "x", false);
  auto ov = view_of<T>(out, "out", true);
  logitkit::ArrayView<const T> bv;
  logitkit::ArrayView<T> sv;
  if (!b.is_none()) bv = view_of<const T>(b.cast<py::array>(), "b", false);
  if (!sign.is_none()) sv = view_of<T>(sign.cast<py::array>(), "sign", true);
  py::gil_scoped_release release;
  logitkit::logsumexp<T>(xv, ov, axis, bv, sv);
}

}  // namespace

void bind_softmax(py::module_& m) {
  m.def(
      "softmax",
      [](const py::array& x, const py::array& out, int axis, double temperature, const std::string& algorithm) {
        is_f32(x) ? softmax_like<float>(x, out, axis, temperature, algorithm, false)
                  : softmax_like<double>(x, out, axis, temperature, algorithm, false);
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"), py::arg("algorithm"));
  m.def(
      "log_softmax",
      [](const py::array& x, const py::array& out, int axis, double temperature) {
        is_f32(x) ? softmax_like<float>(x, out, axis, temperature, "auto", true)
                  : softmax_like<double>(x, out, axis, temperature, "auto", true);
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("temperature"));
  m.def(
      "logsumexp",
      [](const py::array& x, const py::array& out, int axis, const py::object& b, const py::object& sign) {
        is_f32(x) ? logsumexp_impl<float>(x, out, axis, b, sign) : logsumexp_impl<double>(x, out, axis, b, sign);
      },
      py::arg("x"), py::arg("out"), py::arg("axis"), py::arg("b"), py::arg("sign"));
}

}  // namespace logitkit_py
