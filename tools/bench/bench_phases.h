// The phases of a herald-bench run, driven by the coordinator process: fork the subscriber
// workers, connect (bounded) -> settle -> warm-up -> measured window -> drain (bounded), then
// gather the workers' final reports and print the result. Every phase has a deadline and
// --duration is a hard cap enforced with alarm().
#pragma once

#include "tools/bench/bench_options.h"

namespace herald::bench {

// Runs the benchmark described by `o` (as parsed) in this process and the workers it forks;
// prints the JSON result line on stdout and the summary on stderr. Returns the exit code: 0
// done, 1 a system call failed, 2 the options do not make a run. Called once per process; it
// installs the SIGPIPE and SIGALRM handlers.
int run_phases(Options o);

}  // namespace herald::bench
