#include "tools/bench/bench_options.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string_view>

namespace herald::bench {
namespace {

bool parse_double(const char* s, double& out) {
    char* end = nullptr;
    errno = 0;
    out = std::strtod(s, &end);
    return errno == 0 && end != s && *end == '\0' && std::isfinite(out) && out >= 0;
}

bool parse_size(const char* s, std::size_t& out) {
    std::string_view v(s);
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    return ec == std::errc() && p == v.data() + v.size();
}

// Sets the option named `a` from `v`. Returns false for a bad value; sets `known` to false for
// an unknown name.
bool set_option(std::string_view a, const char* v, Options& o, bool& known) {
    known = true;
    if (a == "--transport") {
        o.transport = v;
    } else if (a == "--sub-url") {
        o.sub_url = v;
    } else if (a == "--pub-url") {
        o.pub_url = v;
    } else if (a == "--pub-method") {
        o.pub_method = v;
    } else if (a == "--pub-body") {
        o.pub_body = v;
    } else if (a == "--pub-content-type") {
        o.pub_content_type = v;
    } else if (a == "--pub-header") {
        o.pub_headers.emplace_back(v);
    } else if (a == "--sub-header") {
        o.sub_headers.emplace_back(v);
    } else if (a == "--poll-cursor") {
        std::string_view c = v;
        if (c == "herald") {
            o.poll_cursor = PollCursor::kHerald;
        } else if (c == "nchan") {
            o.poll_cursor = PollCursor::kNchan;
        } else if (c == "none") {
            o.poll_cursor = PollCursor::kNone;
        } else {
            return false;
        }
    } else if (a == "--ws-sub-op") {
        std::string_view c = v;
        o.ws_sub_op = c == "1";
        return c == "0" || c == "1";
    } else if (a == "--streams-per-conn") {
        return parse_size(v, o.streams_per_conn) && o.streams_per_conn >= 1 &&
               o.streams_per_conn <= 100'000;
    } else if (a == "--subs") {
        return parse_size(v, o.subs);
    } else if (a == "--topics") {
        return parse_size(v, o.topics) && o.topics >= 1 && o.topics <= kMaxTopics;
    } else if (a == "--topic-prefix") {
        o.topic_prefix = v;
    } else if (a == "--procs") {
        return parse_size(v, o.procs);
    } else if (a == "--batch-us") {
        return parse_size(v, o.batch_us) && o.batch_us <= 10'000;
    } else if (a == "--connect-concurrency") {
        return parse_size(v, o.connect_concurrency) && o.connect_concurrency >= 1;
    } else if (a == "--rate") {
        if (std::string_view(v) == "max") {
            o.max_rate = true;
            o.rate = 0;
            return true;
        }
        o.max_rate = false;
        return parse_double(v, o.rate);
    } else if (a == "--pub-conns") {
        return parse_size(v, o.pub_conns) && o.pub_conns >= 1 && o.pub_conns <= 1000;
    } else if (a == "--payload") {
        return parse_size(v, o.payload) && o.payload <= (1u << 20);
    } else if (a == "--warmup") {
        return parse_double(v, o.warmup_s);
    } else if (a == "--measure") {
        return parse_double(v, o.measure_s) && o.measure_s > 0;
    } else if (a == "--drain") {
        return parse_double(v, o.drain_s);
    } else if (a == "--settle") {
        return parse_double(v, o.settle_s);
    } else if (a == "--connect-timeout") {
        return parse_double(v, o.connect_timeout_s);
    } else if (a == "--duration") {
        return parse_double(v, o.duration_s) && o.duration_s >= 1;
    } else if (a == "--broker-pid") {
        std::stringstream ss(v);
        std::string part;
        while (std::getline(ss, part, ',')) {
            std::size_t pid = 0;
            if (!parse_size(part.c_str(), pid) || pid == 0) {
                return false;
            }
            o.broker_pids.push_back(static_cast<int>(pid));
        }
    } else if (a == "--label") {
        o.label = v;
    } else {
        known = false;
        return false;
    }
    return true;
}

}  // namespace

ParseResult parse_options(int argc, const char* const* argv, Options& o, std::string& error) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help" || a == "-h") {
            return ParseResult::kHelp;
        }
        if (i + 1 >= argc) {
            error = std::string(a) + " needs a value";
            return ParseResult::kError;
        }
        const char* v = argv[++i];
        bool known = true;
        if (!set_option(a, v, o, known)) {
            error = known ? "bad value for " + std::string(a) + ": '" + v + "'"
                          : "unknown option " + std::string(a) + " (see --help)";
            return ParseResult::kError;
        }
    }
    return ParseResult::kRun;
}

void usage(FILE* f) {
    std::fprintf(
        f,
        "usage: herald-bench [options]\n"
        "Subscribers:\n"
        "  --transport %s   (default sse)\n"
        "  --sub-url URL         template with {topic} and {i} (subscriber number)\n"
        "                        default http://127.0.0.1:8080/topics/{topic}\n"
        "  --sub-header 'K: V'   extra request header (repeatable)\n"
        "  --poll-cursor herald|nchan|none   long-poll cursor: ?since=last_id (herald),\n"
        "                        Last-Modified/Etag -> If-Modified-Since/If-None-Match (nchan),\n"
        "                        none (Pushpin)   (default herald)\n"
        "  --ws-sub-op 1|0       ws: send {\"op\":\"sub\",\"topic\":T} after the upgrade\n"
        "                        (Herald's pubsub subprotocol; 0 for a broker whose URL names\n"
        "                        the channel, e.g. nchan) (default 1)\n"
        "  --streams-per-conn M  h2-sse: subscriber streams per h2c connection (default 100)\n"
        "  --subs N              subscribers (default 100)\n"
        "  --topics T            topics; subscriber i listens on topic i %% T (default 1)\n"
        "  --topic-prefix P      topic names are P0..P(T-1) (default bench<pid>-)\n"
        "  --procs K             worker processes holding subscribers (default ceil(N/15000))\n"
        "  --connect-concurrency N   connections being set up at once (default 256)\n"
        "  --batch-us U          after an epoll_wait with few ready sockets, pause U us so\n"
        "                        reads batch up (less generator CPU, up to U us more latency)\n"
        "Publisher:\n"
        "  --pub-url URL         template with {topic} (default "
        "http://127.0.0.1:8080/topics/{topic})\n"
        "  --pub-method M        (default POST)\n"
        "  --pub-body TEMPLATE   body with {data} (the marker) and {topic} (default {data})\n"
        "  --pub-content-type T  (default text/plain)\n"
        "  --pub-header 'K: V'   extra request header (repeatable)\n"
        "  --rate R|max          events/s over all topics; 0 = no publishing (default 10)\n"
        "  --pub-conns C         keep-alive publisher connections, one request in flight each\n"
        "  --payload BYTES       pad event data to this size (default: marker only)\n"
        "Measurement:\n"
        "  --broker-pid PID[,PID...]  processes whose RSS and CPU are sampled (summed)\n"
        "  --warmup S  --measure S  --drain S  --settle S  --connect-timeout S\n"
        "  --duration S          hard cap on the whole run (default 120)\n"
        "  --label TEXT          copied into the JSON result\n",
        transport_names().c_str());
}

}  // namespace herald::bench
