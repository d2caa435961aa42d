// herald-cli: publish to and subscribe from a Herald broker on the command line.
// Output is one JSON object per line, flushed at once, so scripts and tests can read it
// through a pipe as it comes.

#include "proto/transport.h"
#include "tools/client/client.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using herald::client::Client;
using herald::client::Clock;
using herald::client::Notification;
using herald::client::SubscribeOptions;
using herald::proto::Transport;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // the broker said no, or the network failed
constexpr int kExitUsage = 2;

constexpr std::string_view kUsage = R"(usage:
  herald-cli pub TOPIC DATA [--type T] [--url URL]
  herald-cli sub TOPIC... [--since ID] [--transport sse|stream|poll] [--count N]
                 [--timeout S] [--url URL]
  herald-cli --help

pub   publishes DATA ("-": read it from stdin) to TOPIC and prints the broker's answer,
      {"id":"..","topic":".."}.
sub   subscribes to one or more topics and prints one JSON object per line:
      {"id":"..","topic":"..","type":"..","data":".."} for an event ("type" only when the
      event has one; "topic" is left out on SSE with several topics, whose frames carry none),
      {"control":"truncated","topic":"..","since":"..","oldest":".."} when events after the
      cursor were already deleted by retention.

options:
  --url URL          broker base URL (default $HERALD_URL, else http://127.0.0.1:8080)
  --type T           event type for pub
  --since ID         resume after this event id (0: all retained history); default: new
                     events only
  --transport T      sse (default), stream (NDJSON) or poll (long-poll)
  --count N          exit 0 after N events (truncation signals do not count)
  --timeout S        exit 0 after S seconds (decimals allowed)
  --                 ends options: the remaining arguments are topics or data

exit status: 0 ok, 1 broker or network error, 2 usage error
)";

struct Args {
    std::string command;
    std::vector<std::string> positional;
    std::optional<std::string> url;
    std::optional<std::string> type;
    std::optional<std::string> since;
    Transport transport = Transport::kSse;
    std::optional<long long> count;
    std::optional<double> timeout_s;
    bool help = false;
};

// A usage problem: printed with a pointer to --help, exit status 2.
struct UsageError {
    std::string message;
};

template <typename T> std::optional<T> parse_number(std::string_view text) {
    T value{};
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (ec != std::errc() || ptr != end) {
        return std::nullopt;
    }
    return value;
}

// Options may come before, between or after the positional arguments; "--opt=value" and
// "--opt value" both work. Returns the error, if any, rather than throwing.
std::optional<UsageError> parse_args(int argc, char** argv, Args& args) {
    std::vector<std::string_view> words(argv + 1, argv + argc);
    bool options_done = false;
    for (std::size_t i = 0; i < words.size(); ++i) {
        const std::string_view word = words[i];
        if (options_done || word == "-" || !word.starts_with("-")) {
            if (args.command.empty()) {
                args.command = std::string(word);
            } else {
                args.positional.emplace_back(word);
            }
            continue;
        }
        if (word == "--") {
            options_done = true;
            continue;
        }
        if (word == "--help" || word == "-h") {
            args.help = true;
            continue;
        }
        std::string_view name = word;
        std::optional<std::string_view> value;
        if (const std::size_t eq = word.find('='); eq != std::string_view::npos) {
            name = word.substr(0, eq);
            value = word.substr(eq + 1);
        }
        static constexpr std::string_view kValued[] = {"--url",       "--type",  "--since",
                                                       "--transport", "--count", "--timeout"};
        if (std::find(std::begin(kValued), std::end(kValued), name) == std::end(kValued)) {
            return UsageError{"unknown option " + std::string(name)};
        }
        if (!value) {
            if (i + 1 == words.size()) {
                return UsageError{std::string(name) + " needs a value"};
            }
            value = words[++i];
        }
        if (name == "--url") {
            args.url = std::string(*value);
        } else if (name == "--type") {
            args.type = std::string(*value);
        } else if (name == "--since") {
            args.since = std::string(*value);
        } else if (name == "--transport") {
            const auto t = herald::proto::parse_transport(*value);
            if (!t) {
                return UsageError{"unknown transport '" + std::string(*value) +
                                  "' (sse, stream or poll)"};
            }
            args.transport = *t;
        } else if (name == "--count") {
            const auto n = parse_number<long long>(*value);
            if (!n || *n < 1) {
                return UsageError{"--count needs a positive integer"};
            }
            args.count = n;
        } else {
            const auto s = parse_number<double>(*value);
            if (!s || !(*s > 0) || *s > 1e9) {
                return UsageError{"--timeout needs a positive number of seconds"};
            }
            args.timeout_s = s;
        }
    }
    if (args.help) {
        return std::nullopt;
    }
    if (args.command == "pub") {
        if (args.positional.size() != 2) {
            return UsageError{"pub needs TOPIC and DATA"};
        }
        if (args.since || args.count || args.timeout_s || args.transport != Transport::kSse) {
            return UsageError{"pub takes only --type and --url"};
        }
    } else if (args.command == "sub") {
        if (args.positional.empty()) {
            return UsageError{"sub needs at least one TOPIC"};
        }
        if (args.type) {
            return UsageError{"--type is for pub"};
        }
    } else if (args.command.empty()) {
        return UsageError{"missing command"};
    } else {
        return UsageError{"unknown command '" + args.command + "'"};
    }
    return std::nullopt;
}

bool read_stdin(std::string& out) {
    char buf[64 * 1024];
    for (;;) {
        const std::size_t n = std::fread(buf, 1, sizeof buf, stdin);
        out.append(buf, n);
        if (n < sizeof buf) {
            return std::ferror(stdin) == 0;
        }
    }
}

// Writes one line and flushes it: readers wait on the pipe line by line.
bool print_line(const std::string& line) {
    return std::fwrite(line.data(), 1, line.size(), stdout) == line.size() &&
           std::fputc('\n', stdout) != EOF && std::fflush(stdout) == 0;
}

int fail(std::string_view message) {
    std::fprintf(stderr, "herald-cli: %.*s\n", static_cast<int>(message.size()), message.data());
    return kExitFailure;
}

int run_pub(Client& client, const Args& args) {
    std::string data = args.positional[1];
    if (data == "-") {
        data.clear();
        if (!read_stdin(data)) {
            return fail("cannot read stdin");
        }
    }
    auto ack = client.publish(args.positional[0], data, args.type.value_or(""));
    if (!ack) {
        return fail(ack.error().detail);
    }
    nlohmann::ordered_json out{{"id", ack->id}, {"topic", ack->topic}};
    if (!print_line(out.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace))) {
        return fail("cannot write to stdout");
    }
    return kExitOk;
}

int run_sub(Client& client, const Args& args) {
    SubscribeOptions options;
    options.topics = args.positional;
    options.since = args.since;
    options.transport = args.transport;
    if (args.timeout_s) {
        options.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(*args.timeout_s));
    }
    long long events = 0;
    bool write_failed = false;
    const auto status = client.subscribe(options, [&](const Notification& n) {
        if (!print_line(herald::client::encode_notification_json(n))) {
            write_failed = true;
            return false;
        }
        if (n.kind == Notification::Kind::kEvent) {
            ++events;
        }
        return !(args.count && events >= *args.count);
    });
    if (write_failed) {
        return fail("cannot write to stdout");
    }
    if (!status) {
        return fail(status.error().detail);
    }
    return kExitOk;
}

int run(int argc, char** argv) {
    Args args;
    if (auto err = parse_args(argc, argv, args)) {
        std::fprintf(stderr, "herald-cli: %s\n(see herald-cli --help)\n", err->message.c_str());
        return kExitUsage;
    }
    if (args.help) {
        std::fwrite(kUsage.data(), 1, kUsage.size(), stdout);
        return kExitOk;
    }
    std::string url_text(herald::client::kDefaultUrl);
    if (args.url) {
        url_text = *args.url;
    } else if (const char* env = std::getenv("HERALD_URL"); env != nullptr && *env != '\0') {
        url_text = env;
    }
    auto url = herald::client::parse_url(url_text);
    if (!url) {
        std::fprintf(stderr, "herald-cli: %s\n", url.error().detail.c_str());
        return kExitUsage;
    }
    Client client(std::move(*url));
    return args.command == "pub" ? run_pub(client, args) : run_sub(client, args);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        // Only allocation failure can get here: the client library returns errors as values.
        std::fprintf(stderr, "herald-cli: %s\n", e.what());
        return kExitFailure;
    }
}
