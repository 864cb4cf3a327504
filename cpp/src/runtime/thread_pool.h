// The process-wide persistent thread pool behind every parallel kernel call.
#pragma once
#include <atomic>
#include <cstddef>
#include <exception>
#include <type_traits>
#include <utility>

namespace logitkit {

// Runs fn(task) for every task in [0, n_tasks), on up to get_num_threads() threads including the
// caller, and returns when all are done. Which thread runs a task never changes what it computes:
// callers split work into tasks by size only, so results do not depend on the thread count.
// Calls from inside a task, or while another thread holds the pool, run serially on the caller.
// Throws the Error of an invalid LOGITKIT_NUM_THREADS until set_num_threads() replaces it; every
// op calls it (through kernels()), whatever its size.
void check_thread_env();

void parallel_for_impl(size_t n_tasks, void (*fn)(void* ctx, size_t task), void* ctx);

// An exception thrown by a task (std::bad_alloc from scratch memory, say) reaches the caller once
// every task has returned: the first one is rethrown, later tasks are skipped, and the pool never
// sees it, so no worker unwinds through the pool and no task outlives the caller's frame.
template <class F>
void parallel_for(size_t n_tasks, F&& fn) {
  if (n_tasks == 0) return;
  if (n_tasks == 1) {
    fn(size_t{0});
    return;
  }
  struct Job {
    std::remove_reference_t<F>* fn = nullptr;
    std::atomic<bool> failed{false};
    std::exception_ptr error;  // written once, by the task that set `failed`
  } job;
  job.fn = &fn;
  parallel_for_impl(
      n_tasks,
      [](void* ctx, size_t task) {
        Job& j = *static_cast<Job*>(ctx);
        if (j.failed.load(std::memory_order_relaxed)) return;
        try {
          (*j.fn)(task);
        } catch (...) {
          if (!j.failed.exchange(true)) j.error = std::current_exception();
        }
      },
      &job);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace logitkit
