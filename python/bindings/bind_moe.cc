// Bindings for the moe family (see python/logitkit/moe.py for the public API). Arrays arrive
// validated, converted and allocated by the Python layer; this layer wraps pointers and drops the GIL.
#include <string>

#include "bind_common.h"
#include "logitkit/moe.h"
#include "logitkit/route.h"

namespace logitkit_py {
namespace {

template <class T>
logitkit::ArrayView<T> any_view(const py::array& a, const char* name, bool writable) {
  return view_of<T>(a, name, writable);
}

logitkit::BalanceNormalization parse_norm(const std::string& name) {
  if (name == "switch") return logitkit::BalanceNormalization::kSwitch;
  if (name == "hf_mixtral") return logitkit::BalanceNormalization::kHfMixtral;
  throw py::value_error("normalization: expected 'switch', 'deepspeed' or 'hf_mixtral'; got '" + name + "'");
}

}  // namespace

void bind_moe(py::module_& m) {
  m.def(
      "dispatch",
      [](const py::array& experts, int64_t num_experts, int64_t capacity, double capacity_factor, int64_t min_capacity,
         bool by_probs, int64_t block_size, const py::array& counts, const py::array& kept, const py::array& offsets,
         const py::array& position, const py::array& slot_token, const py::array& slot_pair,
         const py::array& block_expert, const py::object& weights) {
        logitkit::DispatchOptions o;
        o.capacity = capacity;
        o.capacity_factor = capacity_factor;
        o.min_capacity = min_capacity;
        o.drop_policy = by_probs ? logitkit::DropPolicy::kProbs : logitkit::DropPolicy::kPosition;
        o.block_size = block_size;
        logitkit::DispatchPlanView plan{view_of<int64_t>(counts, "counts", true), view_of<int64_t>(kept, "kept", true),
                                        view_of<int64_t>(offsets, "offsets", true),
                                        view_of<int32_t>(position, "position", true),
                                        view_of<int32_t>(slot_token, "slot_token", true),
                                        view_of<int32_t>(slot_pair, "slot_pair", true),
                                        view_of<int32_t>(block_expert, "block_expert", true)};
        auto ev = view_of<const int32_t>(experts, "experts", false);
        if (!weights.is_none() && is_f32(py::reinterpret_borrow<py::array>(weights))) {
          auto wv = optional_input<float>(weights, "weights");
          py::gil_scoped_release release;
          return logitkit::dispatch<float>(ev, num_experts, o, plan, wv);
        }
        auto wv = optional_input<double>(weights, "weights");
        py::gil_scoped_release release;
        return logitkit::dispatch<double>(ev, num_experts, o, plan, wv);
      },
      py::arg("experts"), py::arg("num_experts"), py::arg("capacity"), py::arg("capacity_factor"),
      py::arg("min_capacity"), py::arg("by_probs"), py::arg("block_size"), py::arg("counts"), py::arg("kept"),
      py::arg("offsets"), py::arg("position"), py::arg("slot_token"), py::arg("slot_pair"), py::arg("block_expert"),
      py::arg("weights"));
  m.def("dispatch_slot_bound", &logitkit::dispatch_slot_bound, py::arg("pairs"), py::arg("experts"),
        py::arg("block_size"));
  // the capacity dispatch() applies (-1: unlimited), reported as the plan's capacity
  m.def(
      "dispatch_capacity",
      [](int64_t tokens, int64_t k, int64_t num_experts, int64_t capacity, double capacity_factor,
         int64_t min_capacity, int64_t block_size) {
        logitkit::DispatchOptions o;
        o.capacity = capacity;
        o.capacity_factor = capacity_factor;
        o.min_capacity = min_capacity;
        o.block_size = block_size;
        return logitkit::dispatch_capacity(tokens, k, num_experts, o);
      },
      py::arg("tokens"), py::arg("k"), py::arg("num_experts"), py::arg("capacity"), py::arg("capacity_factor"),
      py::arg("min_capacity"), py::arg("block_size"));
  m.def(
      "expert_counts",
      [](const py::array& experts, int64_t num_experts, const py::array& counts) {
        auto ev = view_of<const int32_t>(experts, "experts", false);
        auto cv = view_of<int64_t>(counts, "counts", true);
        py::gil_scoped_release release;
        logitkit::expert_counts(ev, num_experts, cv);
      },
      py::arg("experts"), py::arg("num_experts"), py::arg("counts"));
  m.def(
      "permute",
      [](const py::array& hidden, const py::array& slot_token, const py::array& out) {
        // 2-d arrays with contiguous rows (the Python layer makes them so); any element type
        auto sv = view_of<const int32_t>(slot_token, "slot_token", false);
        const void* h = hidden.data();
        void* o = const_cast<void*>(out.data());
        const int64_t tokens = hidden.shape(0), hs = hidden.strides(0), os = out.strides(0);
        const int64_t row_bytes = hidden.shape(1) * hidden.itemsize();
        py::gil_scoped_release release;
        logitkit::permute(h, tokens, hs, sv, o, os, row_bytes);
      },
      py::arg("hidden"), py::arg("slot_token"), py::arg("out"));
  m.def(
      "unpermute",
      [](const py::array& expert_out, const py::array& position, const py::array& weights, const py::array& out) {
        auto pv = view_of<const int32_t>(position, "position", false);
        if (is_f32(expert_out)) {
          auto xv = view_of<const float>(expert_out, "expert_out", false);
          auto wv = view_of<const float>(weights, "weights", false);
          auto ov = view_of<float>(out, "out", true);
          py::gil_scoped_release release;
          logitkit::unpermute<float>(xv, pv, wv, ov);
        } else {
          auto xv = view_of<const double>(expert_out, "expert_out", false);
          auto wv = view_of<const double>(weights, "weights", false);
          auto ov = view_of<double>(out, "out", true);
          py::gil_scoped_release release;
          logitkit::unpermute<double>(xv, pv, wv, ov);
        }
      },
      py::arg("expert_out"), py::arg("position"), py::arg("weights"), py::arg("out"));
  m.def(
      "expert_choice",
      [](const py::array& logits, const py::array& weights, const py::array& tokens, int64_t capacity) {
        auto tv = view_of<int32_t>(tokens, "tokens", true);
        if (is_f32(logits)) {
          auto xv = view_of<const float>(logits, "logits", false);
          auto wv = view_of<float>(weights, "weights", true);
          py::gil_scoped_release release;
          logitkit::expert_choice<float>(xv, wv, tv, capacity);
        } else {
          auto xv = view_of<const double>(logits, "logits", false);
          auto wv = view_of<double>(weights, "weights", true);
          py::gil_scoped_release release;
          logitkit::expert_choice<double>(xv, wv, tv, capacity);
        }
      },
      py::arg("logits"), py::arg("weights"), py::arg("tokens"), py::arg("capacity"));
  m.def(
      "moe_loss",
      [](const std::string& kind, const py::array& logits, const py::object& experts, const std::string& norm,
         double alpha, int64_t seq_len, const py::object& grad, double grad_output) {
        auto run = [&](auto tag) -> double {
          using T = decltype(tag);
          auto xv = view_of<const T>(logits, "logits", false);
          auto gv = optional_output<T>(grad, "grad");
          logitkit::ArrayView<const int32_t> ev;
          if (!experts.is_none()) ev = view_of<const int32_t>(py::reinterpret_borrow<py::array>(experts), "experts", false);
          if (kind == "load_balancing") {
            const auto n = parse_norm(norm);
            py::gil_scoped_release release;
            return logitkit::load_balancing_loss<T>(xv, ev, n, alpha, gv, grad_output);
          }
          if (kind == "sequence_balance") {
            py::gil_scoped_release release;
            return logitkit::sequence_balance_loss<T>(xv, ev, seq_len, alpha, gv, grad_output);
          }
          py::gil_scoped_release release;
          return logitkit::router_z_loss<T>(xv, gv, grad_output);
        };
        return is_f32(logits) ? run(float{}) : run(double{});
      },
      py::arg("kind"), py::arg("logits"), py::arg("experts"), py::arg("normalization"), py::arg("alpha"),
      py::arg("seq_len"), py::arg("grad"), py::arg("grad_output"));
  m.def(
      "update_bias",
      [](const py::array& bias, const py::array& counts, double rate) {
        auto cv = view_of<const int64_t>(counts, "counts", false);
        if (is_f32(bias)) {
          auto bv = view_of<float>(bias, "bias", true);
          py::gil_scoped_release release;
          logitkit::update_bias<float>(bv, cv, rate);
        } else {
          auto bv = view_of<double>(bias, "bias", true);
          py::gil_scoped_release release;
          logitkit::update_bias<double>(bv, cv, rate);
        }
      },
      py::arg("bias"), py::arg("counts"), py::arg("rate"));
  m.def(
      "contrastive_logits",
      [](const py::array& strong, const py::array& weak, const py::array& out, double beta, double alpha) {
        if (is_f32(strong)) {
          auto sv = view_of<const float>(strong, "strong", false);
          auto wv = view_of<const float>(weak, "weak", false);
          auto ov = view_of<float>(out, "out", true);
          py::gil_scoped_release release;
          logitkit::contrastive_logits<float>(sv, wv, ov, beta, alpha);
        } else {
          auto sv = view_of<const double>(strong, "strong", false);
          auto wv = view_of<const double>(weak, "weak", false);
          auto ov = view_of<double>(out, "out", true);
          py::gil_scoped_release release;
          logitkit::contrastive_logits<double>(sv, wv, ov, beta, alpha);
        }
      },
      py::arg("strong"), py::arg("weak"), py::arg("out"), py::arg("beta"), py::arg("alpha"));
}

}  // namespace logitkit_py
