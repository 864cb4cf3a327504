// logitkit._core: the private extension module. Each op family registers itself from its own
// bind_<family>.cc; this file holds the runtime controls and the error mapping.
#include <pybind11/stl.h>

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
}

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

  logitkit_py::bind_softmax(m);
  logitkit_py::bind_masked_softmax(m);
  logitkit_py::bind_softmax_backward(m);
  logitkit_py::bind_stablemax(m);
  logitkit_py::bind_entropy(m);
  logitkit_py::bind_sparsemax(m);
}
