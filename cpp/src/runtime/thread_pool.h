// The process-wide persistent thread pool behind every parallel kernel call.
#pragma once
#include <cstddef>
#include <utility>

namespace logitkit {

// Runs fn(task) for every task in [0, n_tasks), on up to get_num_threads() threads including the
// caller, and returns when all are done. Which thread runs a task never changes what it computes:
// callers split work into tasks by size only, so results do not depend on the thread count.
// Calls from inside a task, or while another thread holds the pool, run serially on the caller.
void parallel_for_impl(size_t n_tasks, void (*fn)(void* ctx, size_t task), void* ctx);

template <class F>
void parallel_for(size_t n_tasks, F&& fn) {
  if (n_tasks == 0) return;
  if (n_tasks == 1) {
    fn(size_t{0});
    return;
  }
  using Fn = std::remove_reference_t<F>;
  parallel_for_impl(
      n_tasks, [](void* ctx, size_t task) { (*static_cast<Fn*>(ctx))(task); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace logitkit
