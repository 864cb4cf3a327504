// Bindings for linear_cross_entropy (see python/logitkit/linear_cross_entropy.py for the public
// API). Arrays arrive validated, converted and allocated by the Python layer; optional ones are
// None. bfloat16 input and linear_weight arrive as their uint16 bits.
#include <cstdint>
#include <string>

#include "bind_common.h"
#include "logitkit/linear_cross_entropy.h"

namespace logitkit_py {

void bind_linear_cross_entropy(py::module_& m) {
  // Returns (loss, gradient blocks formed, blocks skipped by filter_eps).
  m.def(
      "linear_cross_entropy",
      [](const py::array& input, const py::array& linear_weight, const py::array& target, const py::object& bias,
         const py::object& weight, const py::object& sample_weight, const py::object& loss, const py::object& d_input,
         const py::object& d_weight, const py::object& d_bias, double grad_output, const py::object& grad_output_rows,
         int64_t ignore_index, const std::string& reduction, double label_smoothing, double z_loss, double softcap,
         double filter_eps, bool accumulate, int64_t chunk_rows, bool bfloat16_gradient) {
        logitkit::LinearCrossEntropyStats stats;
        const bool bf16 = has_dtype<uint16_t>(input);
        auto call = [&](auto t, auto i) {
          using T = decltype(t);
          using Index = decltype(i);
          const LossViews<T> v(weight, sample_weight, loss, py::none(), grad_output, grad_output_rows, -1,
                               ignore_index, reduction);
          logitkit::LinearCrossEntropyOptions o;
          o.label_smoothing = label_smoothing;
          o.z_loss = z_loss;
          o.softcap = softcap;
          o.filter_eps = filter_eps;
          o.accumulate = accumulate;
          o.chunk_rows = chunk_rows;
          o.bfloat16_gradient = bfloat16_gradient;
          logitkit::LinearCrossEntropyGrads<T> g;
          g.input = optional_output<T>(d_input, "d_input");
          g.linear_weight = optional_output<T>(d_weight, "d_linear_weight");
          g.linear_bias = optional_output<T>(d_bias, "d_linear_bias");
          g.grad_output = grad_output;
          g.grad_output_rows = v.grad.grad_output_rows;
          const auto tv = view_of<const Index>(target, "target", false);
          const auto bv = optional_input<T>(bias, "linear_bias");
          if constexpr (std::is_same_v<T, float>) {
            if (bf16) {
              const auto xv = view_of<const uint16_t>(input, "input", false);
              const auto wv = view_of<const uint16_t>(linear_weight, "linear_weight", false);
              py::gil_scoped_release release;
              return logitkit::linear_cross_entropy_bf16<Index>(xv, wv, tv, bv, v.options, o, v.weights, v.loss, g,
                                                                &stats);
            }
          }
          const auto xv = view_of<const T>(input, "input", false);
          const auto wv = view_of<const T>(linear_weight, "linear_weight", false);
          py::gil_scoped_release release;
          return logitkit::linear_cross_entropy<T, Index>(xv, wv, tv, bv, v.options, o, v.weights, v.loss, g, &stats);
        };
        const bool i32 = has_dtype<int32_t>(target);
        double value;
        if (bf16 || is_f32(input))
          value = i32 ? call(float{}, int32_t{}) : call(float{}, int64_t{});
        else
          value = i32 ? call(double{}, int32_t{}) : call(double{}, int64_t{});
        return py::make_tuple(value, stats.blocks, stats.skipped);
      },
      py::arg("input"), py::arg("linear_weight"), py::arg("target"), py::arg("linear_bias"), py::arg("weight"),
      py::arg("sample_weight"), py::arg("loss"), py::arg("d_input"), py::arg("d_linear_weight"),
      py::arg("d_linear_bias"), py::arg("grad_output"), py::arg("grad_output_rows"), py::arg("ignore_index"),
      py::arg("reduction"), py::arg("label_smoothing"), py::arg("z_loss"), py::arg("softcap"), py::arg("filter_eps"),
      py::arg("accumulate"), py::arg("chunk_rows"), py::arg("bfloat16_gradient") = false);
}

}  // namespace logitkit_py
