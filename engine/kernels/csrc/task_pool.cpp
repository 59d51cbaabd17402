// The task pool of task_pool.h: persistent workers woken per loop, tasks claimed atomically.
#include "task_pool.h"

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace p2phd::cpu {
namespace {

using Fn = std::function<void(int64_t, int)>;

// One loop: its tasks, the next unclaimed task, and how many have finished.
struct Job {
  const Fn* fn;
  int64_t tasks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> next_worker{1};  // the caller is worker 0
};

class TaskPool {
 public:
  explicit TaskPool(int threads) {
    for (int i = 1; i < threads; ++i) std::thread([this] { serve(); }).detach();
  }

  void run(int64_t tasks, const Fn& fn) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy) {  // another caller's loop is using the workers: run this one here
      for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
      return;
    }
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->tasks = tasks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      ++generation_;
    }
    wake_.notify_all();
    work(*job, 0);
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return job->done.load(std::memory_order_acquire) == tasks; });
    job_.reset();
  }

 private:
  // Claims and runs tasks until none are left; `worker` is assigned on the first claim.
  void work(Job& job, int worker) {
    for (;;) {
      const int64_t t = job.next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job.tasks) return;
      if (worker < 0) worker = job.next_worker.fetch_add(1, std::memory_order_relaxed);
      (*job.fn)(t, worker);
      if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.tasks) {
        std::lock_guard<std::mutex> lock(mutex_);
        finished_.notify_all();
      }
    }
  }

  void serve() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      if (job) work(*job, -1);
    }
  }

  std::mutex busy_;   // held by the caller whose loop the workers serve
  std::mutex mutex_;  // guards job_ and generation_
  std::condition_variable wake_, finished_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
};

// The process's pool, created on first use (again in a forked child, which has no workers).
// Never destroyed: its detached workers sleep until the process exits.
TaskPool& pool() {
  static std::mutex mutex;
  static TaskPool* instance = nullptr;
  static pid_t owner = 0;
  std::lock_guard<std::mutex> lock(mutex);
  if (!instance || owner != getpid()) {
    instance = new TaskPool(kernel_threads());
    owner = getpid();
  }
  return *instance;
}

}  // namespace

int kernel_threads() {
  static const int threads = [] {
    const char* env = std::getenv("P2PHD_KERNEL_THREADS");
    const int requested = env ? std::atoi(env) : 0;
    if (requested > 0) return requested;
    const unsigned cores = std::thread::hardware_concurrency();
    return cores > 0 ? (int)cores : 1;
  }();
  return threads;
}

void parallel_for(int64_t tasks, const std::function<void(int64_t task, int worker)>& fn) {
  if (tasks <= 0) return;
  if (tasks == 1 || kernel_threads() == 1) {
    for (int64_t t = 0; t < tasks; ++t) fn(t, 0);
    return;
  }
  pool().run(tasks, fn);
}

}  // namespace p2phd::cpu
