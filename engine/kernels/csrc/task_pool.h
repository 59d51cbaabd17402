// A small pool of threads that share one loop of tasks with the calling thread.
//
// Why not OpenMP: a parallel region ends in a barrier that waits for every thread of the team,
// so on a busy machine (the inference backend shares the cores) one preempted thread stalls
// each kernel by a scheduler slice (8-16 ms measured on a 2-core machine against ~1 ms of
// work). Here tasks are claimed from a shared counter: the caller runs whatever the workers
// have not claimed and waits only for tasks already running, never for a thread that was late.
#pragma once

#include <stdint.h>

#include <functional>

namespace p2phd::cpu {

// Threads a loop may use, the caller included: P2PHD_KERNEL_THREADS when set, else the cores.
int kernel_threads();

// Runs fn(task, worker) for every task in [0, tasks), spread over the calling thread and the
// pool; `worker` is in [0, kernel_threads()) and no two concurrent calls share one, so it can
// index per-thread scratch. When another caller holds the pool, the loop runs on this thread.
void parallel_for(int64_t tasks, const std::function<void(int64_t task, int worker)>& fn);

}  // namespace p2phd::cpu
