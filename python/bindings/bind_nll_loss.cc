// Bindings for nll_loss (see python/logitkit/nll_loss.py for the public API). Arrays arrive
// validated, converted and allocated by the Python layer; optional ones are None.
#include <cstdint>
#include <string>

#include "bind_common.h"
#include "logitkit/nll_loss.h"

namespace logitkit_py {

void bind_nll_loss(py::module_& m) {
  m.def(
      "nll_loss",
      [](const py::array& log_probs, const py::array& target, const py::object& weight,
         const py::object& sample_weight, const py::object& loss, const py::object& grad, double grad_output,
         const py::object& grad_output_rows, int axis, int64_t ignore_index, const std::string& reduction) {
        return with_loss_types(log_probs, target, [&](auto t, auto i) {
          using T = decltype(t);
          using Index = decltype(i);
          const LossViews<T> v(weight, sample_weight, loss, grad, grad_output, grad_output_rows, axis, ignore_index,
                               reduction);
          const auto lp = view_of<const T>(log_probs, "log_probs", false);
          const auto tv = view_of<const Index>(target, "target", false);
          py::gil_scoped_release release;
          return logitkit::nll_loss<T>(lp, tv, v.options, v.weights, v.loss, v.grad);
        });
      },
      py::arg("log_probs"), py::arg("target"), py::arg("weight"), py::arg("sample_weight"), py::arg("loss"),
      py::arg("grad"), py::arg("grad_output"), py::arg("grad_output_rows"), py::arg("axis"), py::arg("ignore_index"),
      py::arg("reduction"));
}

}  // namespace logitkit_py
