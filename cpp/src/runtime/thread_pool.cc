// Persistent worker threads: spin briefly after each job (back-to-back kernel calls pay no wake-up),
// then sleep on a condition variable. Recreated lazily after fork().
#include "runtime/thread_pool.h"

#include <unistd.h>

#include <atomic>
#include <string>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "logitkit/error.h"
#include "logitkit/runtime.h"

namespace logitkit {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// LOGITKIT_NUM_THREADS when set (an invalid value is an error, as for LOGITKIT_ISA: never a silent
// fallback), else the hardware concurrency.
int default_threads() {
  if (const char* env = std::getenv("LOGITKIT_NUM_THREADS"); env && *env) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= 1024) return static_cast<int>(n);
    throw Error(Error::Kind::kInvalidArgument, "LOGITKIT_NUM_THREADS",
                std::string("must be an integer in [1, 1024], got '") + env + "'");
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

thread_local bool t_inside_task = false;

// How long an idle thread spins before blocking (workers waiting for a job, the caller waiting
// for workers to finish). Calls a few microseconds apart (a Python loop) find the workers awake.
constexpr std::chrono::microseconds kSpin{50};

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { start(threads); }
  ~ThreadPool() { stop(); }

  int threads() const { return threads_; }

  void resize(int threads) {
    std::lock_guard<std::mutex> submit(submit_mutex_);
    stop();
    start(threads);
  }

  void run(size_t n_tasks, void (*fn)(void*, size_t), void* ctx) {
    std::unique_lock<std::mutex> submit(submit_mutex_, std::try_to_lock);
    if (!submit.owns_lock() || t_inside_task || workers_.empty()) {
      run_serial(n_tasks, fn, ctx);
      return;
    }
    fn_ = fn;
    ctx_ = ctx;
    n_tasks_ = n_tasks;
    next_.store(0, std::memory_order_relaxed);
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    work();
    // Wait for every worker to leave this job before its ctx goes out of scope. Spin for the
    // usual case (a worker finishing its last task), but only briefly: a worker that lags by
    // more than kSpin was most likely preempted (other processes on the cores), and spinning on
    // would only keep its CPU from it.
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
      cpu_relax();
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) {
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
      }
    }
  }

 private:
  static void run_serial(size_t n_tasks, void (*fn)(void*, size_t), void* ctx) {
    for (size_t t = 0; t < n_tasks; ++t) fn(ctx, t);
  }

  void work() {
    bool was_inside = t_inside_task;
    t_inside_task = true;
    for (size_t t; (t = next_.fetch_add(1, std::memory_order_relaxed)) < n_tasks_;) fn_(ctx_, t);
    t_inside_task = was_inside;
  }

  // `seen` is the generation current when the worker was created, so a job submitted before the
  // thread gets scheduled is still picked up.
  void worker_loop(uint64_t seen) {
    for (;;) {
      // Spin for the next job before sleeping: back-to-back kernel calls pay no wake-up.
      auto deadline = std::chrono::steady_clock::now() + kSpin;
      for (int i = 0; generation_.load(std::memory_order_acquire) == seen && !stopping_; ++i) {
        cpu_relax();
        if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) {
          std::unique_lock<std::mutex> lock(mutex_);
          wake_.wait(lock, [&] {
            return generation_.load(std::memory_order_acquire) != seen || stopping_;
          });
        }
      }
      if (stopping_) return;
      seen = generation_.load(std::memory_order_acquire);
      work();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_one();
      }
    }
  }

  void start(int threads) {
    threads_ = threads < 1 ? 1 : threads;
    stopping_ = false;
    const uint64_t current = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, current] { worker_loop(current); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one job at a time; concurrent callers run serially instead
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  void (*fn_)(void*, size_t) = nullptr;
  void* ctx_ = nullptr;
  size_t n_tasks_ = 0;
  std::atomic<size_t> next_{0};
  std::atomic<int> pending_{0};
};

std::mutex g_pool_mutex;
ThreadPool* g_pool = nullptr;  // intentionally leaked: workers must not be joined at exit
pid_t g_pool_pid = 0;
int g_requested_threads = 0;

ThreadPool& pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool == nullptr || g_pool_pid != getpid()) {
    // After fork() the child has no workers; the old pool object is abandoned, not destroyed.
    if (g_requested_threads == 0) g_requested_threads = default_threads();
    g_pool = new ThreadPool(g_requested_threads);
    g_pool_pid = getpid();
  }
  return *g_pool;
}

}  // namespace

void parallel_for_impl(size_t n_tasks, void (*fn)(void*, size_t), void* ctx) {
  ThreadPool& p = pool();
  if (p.threads() == 1) {
    for (size_t t = 0; t < n_tasks; ++t) fn(ctx, t);
    return;
  }
  p.run(n_tasks, fn, ctx);
}

int get_num_threads() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_requested_threads == 0) g_requested_threads = default_threads();
  return g_requested_threads;
}

void set_num_threads(int n) {
  if (n < 1 || n > 1024)
    throw Error(Error::Kind::kInvalidArgument, "n", "number of threads must be in [1, 1024], got " + std::to_string(n));
  {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    g_requested_threads = n;  // first, so an invalid LOGITKIT_NUM_THREADS is overridden
  }
  ThreadPool& p = pool();
  if (p.threads() != n) p.resize(n);
}

}  // namespace logitkit
