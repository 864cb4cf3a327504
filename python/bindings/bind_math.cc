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
}

}  // namespace logitkit_py
