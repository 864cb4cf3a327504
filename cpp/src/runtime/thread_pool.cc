// Persistent worker threads that claim the tasks of each job; they spin briefly after each job
// (back-to-back kernel calls pay no wake-up), then sleep on a condition variable. Recreated
// lazily after fork().
#include "runtime/thread_pool.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
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

// LOGITKIT_NUM_THREADS, read and validated once. An invalid value is an error at every call (every
// op, get_num_threads), as LOGITKIT_ISA's is, until set_num_threads() replaces it: never a silent
// fallback, and never an error that depends on whether an input was large enough to use the pool.
struct ThreadEnv {
  int threads = 0;    // 0: not set
  std::string error;  // why the value is invalid
};

const ThreadEnv& thread_env() {
  static const ThreadEnv env = [] {
    ThreadEnv e;
    const char* text = std::getenv("LOGITKIT_NUM_THREADS");
    if (text == nullptr || *text == '\0') return e;
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && errno == 0 && n >= 1 && n <= 1024)
      e.threads = static_cast<int>(n);
    else
      e.error = std::string("must be an integer in [1, 1024], got '") + text + "'";
    return e;
  }();
  return env;
}

std::atomic<bool> g_threads_set{false};  // set_num_threads() succeeded once: the variable no longer counts

int default_threads() {
  if (thread_env().threads > 0) return thread_env().threads;
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

thread_local bool t_inside_task = false;

// How long an idle thread spins before blocking (workers waiting for a job, the caller waiting
// for claimed tasks to finish). Calls a few microseconds apart (a Python loop) find the workers
// awake.
constexpr std::chrono::microseconds kSpin{50};

// Tasks are claimed, not assigned: the caller publishes a job and claims tasks like any worker,
// and waits only for tasks that some thread has claimed. A worker that is slow to wake (asleep,
// preempted, or sharing the caller's CPU) never holds the caller up: it finds the job done and
// goes back to waiting. Measured on a 2-vCPU VM where torch's OpenMP workers, which spin for about
// 10 ms after each torch call, held one CPU: 8x32000 softmax went from 110-170 us per call (the
// caller spun, then slept, waiting for a worker that could not run) to the one-thread time.
class ThreadPool {
 public:
  ThreadPool(int threads, std::string& error) { error = start(threads); }
  ~ThreadPool() { stop(); }

  int threads() const { return threads_.load(std::memory_order_relaxed); }

  std::string resize(int threads) {
    std::lock_guard<std::mutex> submit(submit_mutex_);
    stop();
    return start(threads);
  }

  void run(size_t n_tasks, void (*fn)(void*, size_t), void* ctx) {
    std::unique_lock<std::mutex> submit(submit_mutex_, std::try_to_lock);
    if (!submit.owns_lock() || t_inside_task || workers_.empty()) {
      run_serial(n_tasks, fn, ctx);
      return;
    }
    // A job holds fewer than kIndexMask tasks (the claim word's low bits; kIndexMask marks a closed
    // job); larger counts run as
    // consecutive slices (never in practice: tasks are sized in thousands of elements).
    if (n_tasks < kIndexMask) {
      run_job(n_tasks, fn, ctx);
      return;
    }
    for (size_t base = 0; base < n_tasks; base += kIndexMask - 1) {
      Slice slice{fn, ctx, base};
      run_job(std::min<size_t>(kIndexMask - 1, n_tasks - base), run_slice, &slice);
    }
  }

 private:
  // The claim word: job generation in the high 32 bits, next unclaimed task in the low 32.
  static constexpr int kIndexBits = 32;
  static constexpr uint64_t kIndexMask = (uint64_t{1} << kIndexBits) - 1;

  struct Slice {
    void (*fn)(void*, size_t);
    void* ctx;
    size_t base;
  };
  static void run_slice(void* p, size_t task) {
    const Slice* s = static_cast<const Slice*>(p);
    s->fn(s->ctx, s->base + task);
  }

  static void run_serial(size_t n_tasks, void (*fn)(void*, size_t), void* ctx) {
    for (size_t t = 0; t < n_tasks; ++t) fn(ctx, t);
  }

  void run_job(size_t n_tasks, void (*fn)(void*, size_t), void* ctx) {
    // Close the finished job before touching its fields: a worker may still hold its claim word
    // (every task claimed, index == its task count) and be about to read n_tasks_. Had it read the
    // next job's larger count, its compare-exchange on the stale word would succeed and run a task
    // twice (counted in the new done_). With the index at kIndexMask, no stale word matches, and
    // a worker that reads the new count (acquire) also sees the closed word.
    const uint64_t old_gen = job_.load(std::memory_order_relaxed) >> kIndexBits;
    job_.store((old_gen << kIndexBits) | kIndexMask, std::memory_order_seq_cst);
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    n_tasks_.store(n_tasks, std::memory_order_release);
    const uint64_t gen = (old_gen + 1) & kIndexMask;
    job_.store(gen << kIndexBits, std::memory_order_seq_cst);  // publishes the fields
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      wake_.notify_all();
    }
    work(gen & kIndexMask);
    // Every task is claimed now; wait for the ones other threads still run. Spin for the usual
    // case (a worker finishing its last task), yielding so a claimer preempted on this CPU can
    // run, then sleep.
    const auto deadline = std::chrono::steady_clock::now() + kSpin;
    for (int i = 0; done_.load(std::memory_order_acquire) != n_tasks; ++i) {
      cpu_relax();
      if ((i & 63) == 63) {
        std::this_thread::yield();
        if (std::chrono::steady_clock::now() > deadline) {
          caller_sleeping_.store(true, std::memory_order_seq_cst);
          {
            std::unique_lock<std::mutex> lock(mutex_);
            finished_.wait(lock, [&] { return done_.load(std::memory_order_seq_cst) == n_tasks; });
          }
          caller_sleeping_.store(false, std::memory_order_relaxed);
          break;
        }
      }
    }
  }

  // Claims and runs tasks of generation `gen` until none is left (or a newer job replaced it).
  // A claim is a compare-exchange on the whole word, so it succeeds only while `gen` is current,
  // the job not closed (run_job) and the task unclaimed; the job is then unfinished, so fn_, ctx_
  // and n_tasks_ are still its own.
  void work(uint64_t gen) {
    const bool was_inside = t_inside_task;
    t_inside_task = true;
    uint64_t word = job_.load(std::memory_order_acquire);
    for (;;) {
      if ((word >> kIndexBits) != gen) break;
      const uint64_t task = word & kIndexMask;
      if (task == kIndexMask) break;  // closed: the caller is replacing this job's fields
      const size_t n_tasks = n_tasks_.load(std::memory_order_acquire);
      if (task >= n_tasks) break;
      if (!job_.compare_exchange_weak(word, word + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), static_cast<size_t>(task));
      if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == n_tasks &&
          caller_sleeping_.load(std::memory_order_seq_cst)) {
        std::lock_guard<std::mutex> lock(mutex_);
        finished_.notify_one();
      }
      word = job_.load(std::memory_order_acquire);
    }
    t_inside_task = was_inside;
  }

  uint64_t generation(std::memory_order order = std::memory_order_acquire) const {
    return job_.load(order) >> kIndexBits;
  }

  // `seen` is the generation current when the worker was created, so a job submitted before the
  // thread gets scheduled is still picked up.
  void worker_loop(uint64_t seen) {
    for (;;) {
      // Spin for the next job before sleeping: back-to-back kernel calls pay no wake-up.
      auto deadline = std::chrono::steady_clock::now() + kSpin;
      for (int i = 0; generation() == seen && !stopping_.load(std::memory_order_acquire); ++i) {
        cpu_relax();
        if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) {
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          {
            std::unique_lock<std::mutex> lock(mutex_);
            // seq_cst, as sleepers_ and the caller's publication: either it sees the new job or
            // the caller sees a sleeper and notifies.
            wake_.wait(lock, [&] { return generation(std::memory_order_seq_cst) != seen || stopping_.load(); });
          }
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
        }
      }
      if (stopping_.load(std::memory_order_acquire)) return;
      seen = generation();
      work(seen);
    }
  }

  // Returns "" or, when the system refuses a thread, why, after joining the workers started: the
  // pool then runs on the caller alone.
  std::string start(int threads) {
    threads_.store(1);
    stopping_ = false;
    const uint64_t current = generation();
    const int wanted = threads < 1 ? 1 : threads;
    try {
      for (int i = 1; i < wanted; ++i) workers_.emplace_back([this, current] { worker_loop(current); });
    } catch (const std::system_error& e) {
      const size_t started = workers_.size();
      stop();
      stopping_ = false;
      return "the system refused a thread after " + std::to_string(started) + " of " + std::to_string(wanted - 1) +
             " workers (" + e.what() + "); running on the calling thread alone";
    }
    threads_.store(wanted);
    return {};
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

  std::atomic<int> threads_{1};  // read without the locks by parallel_for_impl
  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one job at a time; concurrent callers run serially instead
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  std::atomic<uint64_t> job_{0};  // the claim word
  std::atomic<void (*)(void*, size_t)> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<size_t> n_tasks_{0};
  std::atomic<size_t> done_{0};  // tasks of the current job finished
  std::atomic<int> sleepers_{0};  // workers blocked on wake_
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stopping_{false};
};

std::mutex g_pool_mutex;
ThreadPool* g_pool = nullptr;  // intentionally leaked: workers must not be joined at exit
pid_t g_pool_pid = 0;
int g_requested_threads = 0;

// fork() while another thread holds g_pool_mutex would leave the child's copy locked for good, and
// the child's first multi-threaded call would hang on it (seen from Python: a fork while other
// threads were inside logitkit calls, tests/test_concurrency.py). The forking thread takes the
// mutex across fork(), so no other thread holds it then; parent and child release it after.
void lock_pool_for_fork() { g_pool_mutex.lock(); }
void unlock_pool_after_fork() { g_pool_mutex.unlock(); }
[[maybe_unused]] const int g_fork_handlers = pthread_atfork(lock_pool_for_fork, unlock_pool_after_fork,
                                                            unlock_pool_after_fork);

ThreadPool& pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool == nullptr || g_pool_pid != getpid()) {
    // After fork() the child has no workers; the old pool object is abandoned, not destroyed.
    if (g_requested_threads == 0) g_requested_threads = default_threads();
    std::string error;
    g_pool = new ThreadPool(g_requested_threads, error);
    g_pool_pid = getpid();
    if (!error.empty()) {  // this call reports it; later ones run on one thread, as reported
      g_requested_threads = 1;
      throw Error(Error::Kind::kInvalidArgument, "threads", error);
    }
  }
  return *g_pool;
}

}  // namespace

void check_thread_env() {
  if (g_threads_set.load(std::memory_order_acquire)) return;
  const ThreadEnv& env = thread_env();
  if (!env.error.empty()) throw Error(Error::Kind::kInvalidArgument, "LOGITKIT_NUM_THREADS", env.error);
}

void parallel_for_impl(size_t n_tasks, void (*fn)(void*, size_t), void* ctx) {
  ThreadPool& p = pool();
  if (p.threads() == 1) {
    for (size_t t = 0; t < n_tasks; ++t) fn(ctx, t);
    return;
  }
  p.run(n_tasks, fn, ctx);
}

int get_num_threads() {
  check_thread_env();
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
  g_threads_set.store(true, std::memory_order_release);
  std::string error;
  try {
    ThreadPool& p = pool();
    if (p.threads() != n) error = p.resize(n);
  } catch (const Error& e) {  // creating the pool failed: it runs on the caller alone
    error = e.what();
  }
  if (!error.empty()) {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    g_requested_threads = 1;
    throw Error(Error::Kind::kInvalidArgument, "n", error);
  }
}

}  // namespace logitkit
