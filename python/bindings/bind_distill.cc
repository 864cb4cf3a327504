// Bindings for distill_loss (see python/logitkit/distill.py for the public API: kl_div, jsd, tvd).
// Arrays arrive validated, converted and allocated by the Python layer; optional ones are None.
#include <cstdint>
#include <string>

#include "bind_common.h"
#include "logitkit/distill.h"

namespace logitkit_py {

namespace {
logitkit::Divergence parse_divergence(const std::string& name) {
  if (name == "forward") return logitkit::Divergence::kForwardKL;
  if (name == "reverse") return logitkit::Divergence::kReverseKL;
  if (name == "jsd") return logitkit::Divergence::kJSD;
  if (name == "tvd") return logitkit::Divergence::kTVD;
  throw py::value_error("divergence: expected 'forward', 'reverse', 'jsd' or 'tvd'; got '" + name + "'");
}
}  // namespace

void bind_distill(py::module_& m) {
  // The loss binding's shared signature (weight and ignore_index unused), then the divergence.
  m.def(
      "distill_loss",
      [](const py::array& student, const py::array& teacher, const py::object& weight, const py::object& sample_weight,
         const py::object& loss, const py::object& grad, double grad_output, const py::object& grad_output_rows,
         int axis, int64_t ignore_index, const std::string& reduction, const std::string& divergence,
         double temperature, bool temperature_squared, double beta) {
        auto call = [&](auto t) {
          using T = decltype(t);
          const LossViews<T> v(weight, sample_weight, loss, grad, grad_output, grad_output_rows, axis, ignore_index,
                               reduction);
          logitkit::DistillOptions o;
          o.divergence = parse_divergence(divergence);
          o.temperature = temperature;
          o.temperature_squared = temperature_squared;
          o.beta = beta;
          const auto sv = view_of<const T>(student, "student", false);
          const auto tv = view_of<const T>(teacher, "teacher", false);
          py::gil_scoped_release release;
          return logitkit::distill_loss<T>(sv, tv, v.options, o, v.weights.sample_weight, v.loss, v.grad);
        };
        return is_f32(student) ? call(float{}) : call(double{});
      },
      py::arg("student"), py::arg("teacher"), py::arg("weight"), py::arg("sample_weight"), py::arg("loss"),
      py::arg("grad"), py::arg("grad_output"), py::arg("grad_output_rows"), py::arg("axis"), py::arg("ignore_index"),
      py::arg("reduction"), py::arg("divergence"), py::arg("temperature"), py::arg("temperature_squared"),
      py::arg("beta"));
  m.def(
      "distill_target_loss",
      [](const py::array& student, const py::array& teacher, const py::array& target, const py::object& sample_weight,
         const py::object& loss, const py::object& grad, double grad_output, const py::object& grad_output_rows,
         int axis, int64_t ignore_index, const std::string& reduction, const std::string& kind, double temperature,
         double alpha, double beta, double gamma) {
        return with_loss_types(student, target, [&](auto t, auto i) {
          using T = decltype(t);
          using Index = decltype(i);
          const LossViews<T> v(py::none(), sample_weight, loss, grad, grad_output, grad_output_rows, axis,
                               ignore_index, reduction);
          logitkit::TargetDistillOptions o;
          if (kind == "dkd") {
            o.kind = logitkit::TargetDistill::kDecoupled;
          } else if (kind == "nkd") {
            o.kind = logitkit::TargetDistill::kNormalized;
          } else {
            throw py::value_error("kind: expected 'dkd' or 'nkd', got '" + kind + "'");
          }
          o.temperature = temperature;
          o.alpha = alpha;
          o.beta = beta;
          o.gamma = gamma;
          const auto sv = view_of<const T>(student, "student", false);
          const auto tv = view_of<const T>(teacher, "teacher", false);
          const auto iv = view_of<const Index>(target, "target", false);
          py::gil_scoped_release release;
          return logitkit::distill_target_loss<T, Index>(sv, tv, iv, v.options, o, v.weights.sample_weight, v.loss,
                                                         v.grad);
        });
      },
      py::arg("student"), py::arg("teacher"), py::arg("target"), py::arg("sample_weight"), py::arg("loss"),
      py::arg("grad"), py::arg("grad_output"), py::arg("grad_output_rows"), py::arg("axis"), py::arg("ignore_index"),
      py::arg("reduction"), py::arg("kind"), py::arg("temperature"), py::arg("alpha"), py::arg("beta"),
      py::arg("gamma"));
  m.def(
      "distill_topk_loss",
      [](const py::array& student, const py::array& teacher_logprobs, const py::array& teacher_ids,
         const py::object& sample_weight, const py::object& loss, const py::object& grad, double grad_output,
         const py::object& grad_output_rows, int axis, const std::string& reduction, double temperature,
         bool temperature_squared) {
        return with_loss_types(student, teacher_ids, [&](auto t, auto i) {
          using T = decltype(t);
          using Index = decltype(i);
          const LossViews<T> v(py::none(), sample_weight, loss, grad, grad_output, grad_output_rows, axis, -100,
                               reduction);
          logitkit::DistillOptions o;
          o.temperature = temperature;
          o.temperature_squared = temperature_squared;
          const auto sv = view_of<const T>(student, "student", false);
          const auto qv = view_of<const T>(teacher_logprobs, "teacher_logprobs", false);
          const auto iv = view_of<const Index>(teacher_ids, "teacher_ids", false);
          py::gil_scoped_release release;
          return logitkit::distill_topk_loss<T, Index>(sv, qv, iv, v.options, o, v.weights.sample_weight, v.loss,
                                                       v.grad);
        });
      },
      py::arg("student"), py::arg("teacher_logprobs"), py::arg("teacher_ids"), py::arg("sample_weight"),
      py::arg("loss"), py::arg("grad"), py::arg("grad_output"), py::arg("grad_output_rows"), py::arg("axis"),
      py::arg("reduction"), py::arg("temperature"), py::arg("temperature_squared"));
}

}  // namespace logitkit_py
