// Measurement types of herald-bench: a mergeable latency histogram and the counters one
// subscriber worker process reports to the coordinator.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace herald::bench {

// Log-linear histogram of nanosecond values: exact below 128 ns, then 64 buckets per power of
// two (at most 1.6 % relative error). Plain data, so worker processes send it over a pipe as
// bytes and the coordinator adds them up. Not thread-safe; one owner.
struct Histogram {
    static constexpr unsigned kSubBits = 6;
    static constexpr std::size_t kLinear = std::size_t{1} << (kSubBits + 1);
    static constexpr std::size_t kPerOctave = std::size_t{1} << kSubBits;
    static constexpr std::size_t kBuckets = kLinear + (64 - kSubBits - 1) * kPerOctave;

    std::array<std::uint64_t, kBuckets> counts{};
    std::uint64_t total = 0;
    std::uint64_t max = 0;

    static std::size_t index(std::uint64_t v) {
        if (v < kLinear) {
            return static_cast<std::size_t>(v);
        }
        const unsigned msb = 63u - static_cast<unsigned>(__builtin_clzll(v));
        const unsigned shift = msb - kSubBits;  // v >> shift is in [kPerOctave, 2 * kPerOctave)
        return kLinear + (shift - 1) * kPerOctave +
               static_cast<std::size_t>((v >> shift) - kPerOctave);
    }

    // The middle of bucket `i`: the value reported for every sample in it.
    static std::uint64_t value_of(std::size_t i) {
        if (i < kLinear) {
            return i;
        }
        const std::size_t b = i - kLinear;
        const unsigned shift = static_cast<unsigned>(b / kPerOctave) + 1;
        const std::uint64_t lower = (static_cast<std::uint64_t>(b % kPerOctave) + kPerOctave)
                                    << shift;
        return lower + (std::uint64_t{1} << shift) / 2;
    }

    void record(std::uint64_t v) {
        ++counts[index(v)];
        ++total;
        if (v > max) {
            max = v;
        }
    }

    void merge(const Histogram& o) {
        for (std::size_t i = 0; i < kBuckets; ++i) {
            counts[i] += o.counts[i];
        }
        total += o.total;
        if (o.max > max) {
            max = o.max;
        }
    }

    // The value at quantile q (0..1]; 0 when empty. Never above the largest sample.
    std::uint64_t quantile(double q) const {
        if (total == 0) {
            return 0;
        }
        auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total) + 0.999999);
        if (rank < 1) {
            rank = 1;
        }
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < kBuckets; ++i) {
            seen += counts[i];
            if (seen >= rank) {
                const std::uint64_t v = value_of(i);
                return v < max ? v : max;
            }
        }
        return max;
    }
};

// Counters of one worker process, sent once at the end. Plain data (sent as bytes).
struct WorkerCounters {
    std::uint64_t subs = 0;               // subscribers this worker was given
    std::uint64_t subs_ready = 0;         // ready when the coordinator asked (streams: 200 seen)
    std::uint64_t ready_at_end = 0;       // still connected and ready at the end
    std::uint64_t connect_failures = 0;   // connect() or SO_ERROR failures
    std::uint64_t disconnects = 0;        // an established subscriber connection ended
    std::uint64_t http_errors = 0;        // non-2xx answers or malformed responses
    std::uint64_t polls = 0;              // long-poll responses received
    std::uint64_t events = 0;             // markers received, any phase, any time
    std::uint64_t events_in_window = 0;   // markers received inside the measured window
    std::uint64_t measured_received = 0;  // markers of events published in the window
    std::uint64_t duplicates = 0;         // seq not above the last one on that subscriber
    std::uint64_t bytes_in = 0;
    std::uint64_t reads = 0;         // read() calls that returned data
    std::uint64_t cpu_ns = 0;        // this worker's own user + system CPU in the window
    std::uint64_t runq_wait_ns = 0;  // time this worker waited for a CPU in the window
    Histogram latency;               // publish -> receive of window events, ns

    // Adds another worker's counters (the coordinator's sum over its workers).
    void add(const WorkerCounters& o) {
        subs += o.subs;
        subs_ready += o.subs_ready;
        ready_at_end += o.ready_at_end;
        connect_failures += o.connect_failures;
        disconnects += o.disconnects;
        http_errors += o.http_errors;
        polls += o.polls;
        events += o.events;
        events_in_window += o.events_in_window;
        measured_received += o.measured_received;
        duplicates += o.duplicates;
        bytes_in += o.bytes_in;
        reads += o.reads;
        cpu_ns += o.cpu_ns;
        runq_wait_ns += o.runq_wait_ns;
        latency.merge(o.latency);
    }
};
static_assert(std::is_trivially_copyable_v<WorkerCounters>);

}  // namespace herald::bench
