// Bindings for the vector math (logitkit/math.h): the accuracy hooks _exp, _log and _log1p, each
// elementwise over a contiguous array with the active backend.
#include <string>
#include <utility>

#include "bind_common.h"
#include "logitkit/math.h"

namespace logitkit_py {
namespace {

enum class Fn { kExp, kLog, kLog1p };

template <class T>
void elementwise(const py::array& x, const py::array& out, Fn fn) {
  auto xv = view_of<const T>(x, "x", false);
  auto ov = view_of<T>(out, "out", true);
  const auto n = static_cast<size_t>(x.size());
  py::gil_scoped_release release;
  switch (fn) {
    case Fn::kExp: logitkit::vexp(xv.data, ov.data, n); break;
    case Fn::kLog: logitkit::vlog(xv.data, ov.data, n); break;
    case Fn::kLog1p: logitkit::vlog1p(xv.data, ov.data, n); break;
  }
}

}  // namespace

void bind_math(py::module_& m) {
  for (auto [name, fn] : {std::pair{"_exp", Fn::kExp}, std::pair{"_log", Fn::kLog}, std::pair{"_log1p", Fn::kLog1p}}) {
    m.def(
        name,
        [name = std::string(name), fn = fn](const py::array& x, const py::array& out) {
          if (!(x.flags() & py::array::c_style) || !(out.flags() & py::array::c_style) || x.size() != out.size())
            throw py::value_error(name + ": x and out must be C-contiguous and of equal size");
          is_f32(x) ? elementwise<float>(x, out, fn) : elementwise<double>(x, out, fn);
        },
        py::arg("x"), py::arg("out"));
  }
  // The roofs `python -m logitkit bench` reports fractions of.
  m.def(
      "_measure_fma_peak",
      [](double seconds) {
        py::gil_scoped_release release;
        return logitkit::measure_fma_peak(seconds);
      },
      py::arg("seconds") = 0.1);
  m.def(
      "_measure_copy_bandwidth",
      [](size_t bytes, int repeats) {
        py::gil_scoped_release release;
        return logitkit::measure_copy_bandwidth(bytes, repeats);
      },
      py::arg("bytes") = size_t{256} << 20, py::arg("repeats") = 5);
}

}  // namespace logitkit_py
