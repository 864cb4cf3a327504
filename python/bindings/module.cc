// logitkit._core: the private extension module. Each op family registers itself from its own
// bind_<family>.cc; this file holds the runtime controls and the error mapping.
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "bind_common.h"
#include "logitkit/runtime.h"
#include "logitkit/version.h"

namespace logitkit_py {
void bind_softmax(py::module_& m);
void bind_masked_softmax(py::module_& m);
void bind_softmax_backward(py::module_& m);
void bind_stablemax(py::module_& m);
void bind_entropy(py::module_& m);
void bind_sparsemax(py::module_& m);

namespace {

// [lowest, highest + 1) byte addresses an array's elements occupy; empty arrays occupy none.
std::pair<uintptr_t, uintptr_t> extent(const py::array& a) {
  auto lo = reinterpret_cast<uintptr_t>(a.data()), hi = lo;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) {
    if (a.shape(d) == 0) return {0, 0};
    const py::ssize_t span = (a.shape(d) - 1) * a.strides(d);
    (span < 0 ? lo : hi) += static_cast<uintptr_t>(span);
  }
  return {lo, hi + static_cast<uintptr_t>(a.itemsize())};
}

// The output array of the common call to an op whose output has x's shape, or None for the
// general path of python/logitkit/_arrays.py (which gives the same result and every error).
// The common call: x a float32/float64 ndarray with NumPy's own (native) descriptor, aligned;
// axis an int in range; out None (a new C-contiguous array is returned) or an aligned, writable
// ndarray of x's descriptor and shape that is x itself or whose memory range does not meet x's.
// In C++ because the same tests in Python cost about 1 microsecond, several times the kernel
// call itself for small inputs.
py::object fast_target(py::handle x, py::handle axis, py::handle out) {
  const auto& api = py::detail::npy_api::get();
  if (Py_TYPE(x.ptr()) != api.PyArray_Type_ || !PyLong_CheckExact(axis.ptr())) return py::none();
  const auto xa = py::reinterpret_borrow<py::array>(x);
  const py::dtype dt = xa.dtype();
  if (!dt.is(py::dtype::of<float>()) && !dt.is(py::dtype::of<double>())) return py::none();
  int overflow = 0;
  const long ax = PyLong_AsLongAndOverflow(axis.ptr(), &overflow);
  const auto ndim = static_cast<long>(xa.ndim());
  if (overflow || ax < -ndim || ax >= ndim) return py::none();
  if (!(xa.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_)) return py::none();
  if (out.is_none()) return py::array(dt, std::vector<py::ssize_t>(xa.shape(), xa.shape() + xa.ndim()));
  if (Py_TYPE(out.ptr()) != api.PyArray_Type_) return py::none();
  const auto oa = py::reinterpret_borrow<py::array>(out);
  if (!oa.dtype().is(dt) || oa.ndim() != xa.ndim() ||
      !std::equal(xa.shape(), xa.shape() + xa.ndim(), oa.shape()))
    return py::none();
  const int need = py::detail::npy_api::NPY_ARRAY_ALIGNED_ | py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  if ((oa.flags() & need) != need) return py::none();
  if (!out.is(x)) {
    const auto [xlo, xhi] = extent(xa);
    const auto [olo, ohi] = extent(oa);
    if (xlo < xhi && olo < ohi && olo < xhi && xlo < ohi) return py::none();  // may overlap
  }
  return py::reinterpret_borrow<py::object>(out);
}

}  // namespace
}  // namespace logitkit_py

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "logitkit C++ core (private; use the logitkit package)";
  m.attr("__version__") = LOGITKIT_VERSION;

  // Every C++ logitkit::Error surfaces as ValueError carrying the argument name in its message.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const logitkit::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("isa", [] { return std::string(logitkit::isa()); });
  m.def("available_isas", &logitkit::available_isas);
  m.def("set_isa", &logitkit::set_isa, py::arg("name"));
  m.def("get_num_threads", &logitkit::get_num_threads);
  m.def("set_num_threads", &logitkit::set_num_threads, py::arg("n"));
  m.def("fast_target", &logitkit_py::fast_target, py::arg("x"), py::arg("axis"), py::arg("out"));

  logitkit_py::bind_softmax(m);
  logitkit_py::bind_masked_softmax(m);
  logitkit_py::bind_softmax_backward(m);
  logitkit_py::bind_stablemax(m);
  logitkit_py::bind_entropy(m);
  logitkit_py::bind_sparsemax(m);
}
