// Bindings for nll_loss (see python/logitkit/nll_loss.py for the public API). Arrays arrive
// validated, converted and allocated by the Python layer; optional ones are None.
#include <cstdint>
#include <string>

#include "bind_common.h"
#include "logitkit/nll_loss.h"

namespace logitkit_py {
namespace {

logitkit::Reduction parse_reduction(const std::string& name) {
  if (name == "mean") return logitkit::Reduction::kMean;
  if (name == "sum") return logitkit::Reduction::kSum;
  if (name == "none") return logitkit::Reduction::kNone;
  throw py::value_error("reduction: expected 'mean', 'sum' or 'none'; got '" + name + "'");
}

template <class T>
logitkit::ArrayView<const T> optional_input(const py::object& a, const char* name) {
  return a.is_none() ? logitkit::ArrayView<const T>{} : view_of<const T>(py::reinterpret_borrow<py::array>(a), name, false);
}
template <class T>
logitkit::ArrayView<T> optional_output(const py::object& a, const char* name) {
  return a.is_none() ? logitkit::ArrayView<T>{} : view_of<T>(py::reinterpret_borrow<py::array>(a), name, true);
}

template <class T, class Index>
double nll_loss_impl(const py::array& log_probs, const py::array& target, const py::object& weight,
                     const py::object& sample_weight, const py::object& loss, const py::object& grad,
                     double grad_output, const py::object& grad_output_rows, int axis, int64_t ignore_index,
                     const std::string& reduction) {
  logitkit::LossOptions options;
  options.reduction = parse_reduction(reduction);
  options.ignore_index = ignore_index;
  options.axis = axis;
  logitkit::LossWeights<T> weights;
  weights.weight = optional_input<T>(weight, "weight");
  weights.sample_weight = optional_input<T>(sample_weight, "sample_weight");
  logitkit::LossGrad<T> g;
  g.grad = optional_output<T>(grad, "grad");
  g.grad_output = grad_output;
  g.grad_output_rows = optional_input<T>(grad_output_rows, "grad_output");
  const auto lp = view_of<const T>(log_probs, "log_probs", false);
  const auto tv = view_of<const Index>(target, "target", false);
  const auto lv = optional_output<T>(loss, "loss");
  py::gil_scoped_release release;
  return logitkit::nll_loss<T>(lp, tv, options, weights, lv, g);
}

}  // namespace

void bind_nll_loss(py::module_& m) {
  m.def(
      "nll_loss",
      [](const py::array& log_probs, const py::array& target, const py::object& weight,
         const py::object& sample_weight, const py::object& loss, const py::object& grad, double grad_output,
         const py::object& grad_output_rows, int axis, int64_t ignore_index, const std::string& reduction) {
        const bool f32 = is_f32(log_probs), i32 = has_dtype<int32_t>(target);
        auto call = [&](auto t, auto i) {
          using T = decltype(t);
          using Index = decltype(i);
          return nll_loss_impl<T, Index>(log_probs, target, weight, sample_weight, loss, grad, grad_output,
                                         grad_output_rows, axis, ignore_index, reduction);
        };
        if (f32) return i32 ? call(float{}, int32_t{}) : call(float{}, int64_t{});
        return i32 ? call(double{}, int32_t{}) : call(double{}, int64_t{});
      },
      py::arg("log_probs"), py::arg("target"), py::arg("weight"), py::arg("sample_weight"), py::arg("loss"),
      py::arg("grad"), py::arg("grad_output"), py::arg("grad_output_rows"), py::arg("axis"), py::arg("ignore_index"),
      py::arg("reduction"));
}

}  // namespace logitkit_py
