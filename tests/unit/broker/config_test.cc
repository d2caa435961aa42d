#include "broker/config.h"
#include "tests/unit/broker/broker_test_env.h"

#include <doctest/doctest.h>
#include <fstream>
#include <initializer_list>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

namespace herald::broker {
namespace {

using test::TempDir;

proto::Result<Config> parse(std::initializer_list<const char*> args) {
    std::vector<const char*> argv{"herald"};
    argv.insert(argv.end(), args.begin(), args.end());
    return parse_config(static_cast<int>(argv.size()), argv.data());
}

Config parse_ok(std::initializer_list<const char*> args) {
    auto c = parse(args);
    REQUIRE_MESSAGE(c.ok(), c.error().detail);
    return std::move(c).value();
}

// The error message of a parse that must fail.
std::string parse_error(std::initializer_list<const char*> args) {
    auto c = parse(args);
    REQUIRE_FALSE(c.ok());
    CHECK(c.error().code == proto::ErrorCode::kInvalidArgument);
    CHECK_FALSE(c.error().detail.empty());
    return c.error().detail;
}

std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
    std::string path = dir.path() + "/" + name;
    std::ofstream out(path);
    out << text;
    REQUIRE(out.good());
    return path;
}

TEST_CASE("config: no arguments give the documented defaults") {
    Config c = parse_ok({});
    CHECK(c.listen_host == "127.0.0.1");
    CHECK(c.listen_port == 8080);
    CHECK(c.data_dir == "./herald-data");
    CHECK(c.retention.max_events_per_topic == 1000);
    CHECK(c.retention.max_age_ms == 0);
    CHECK(c.durability == storage::Durability::kSync);
    CHECK(c.threads == std::max(1u, std::thread::hardware_concurrency()));
    CHECK(c.max_body_bytes == 1048576);
    CHECK(c.max_header_bytes == 16384);
    rlimit lim{};
    REQUIRE(getrlimit(RLIMIT_NOFILE, &lim) == 0);
    CHECK(c.max_connections >= 1);
    CHECK(c.max_connections < static_cast<std::size_t>(lim.rlim_cur));
    CHECK(c.request_timeout_s == 10);
    CHECK(c.idle_timeout_s == 75);
    CHECK(c.heartbeat_s == 15);
    CHECK(c.sse_retry_ms == 2000);
    CHECK(c.sse_padding == 0);
    CHECK(c.poll_timeout_s == 25);
    CHECK(c.max_topics == 64);
    CHECK(c.subscriber_queue_bytes == 1048576);
    CHECK(c.cors_origins.empty());
    CHECK_FALSE(c.show_help);
}

TEST_CASE("config: every flag is accepted as '--key value' and as '--key=value'") {
    struct Case {
        const char* key;
        const char* value;
    };
    const Case cases[] = {
        {"listen", "0.0.0.0:9000"},
        {"data", "var/herald"},
        {"history", "50"},
        {"history-age", "60"},
        {"durability", "write"},
        {"threads", "3"},
        {"max-body", "4096"},
        {"max-header-bytes", "8192"},
        {"max-connections", "10"},
        {"request-timeout", "2.5"},
        {"idle-timeout", "30"},
        {"heartbeat", "0.5"},
        {"sse-retry-ms", "0"},
        {"sse-padding", "2048"},
        {"poll-timeout", "0"},
        {"max-topics", "8"},
        {"subscriber-queue-bytes", "65536"},
        {"cors-origins", "https://a.example"},
    };
    auto check = [](const Config& c) {
        CHECK(c.listen_host == "0.0.0.0");
        CHECK(c.listen_port == 9000);
        CHECK(c.data_dir == "var/herald");
        CHECK(c.retention.max_events_per_topic == 50);
        CHECK(c.retention.max_age_ms == 60000);
        CHECK(c.durability == storage::Durability::kWrite);
        CHECK(c.threads == 3);
        CHECK(c.max_body_bytes == 4096);
        CHECK(c.max_header_bytes == 8192);
        CHECK(c.max_connections == 10);
        CHECK(c.request_timeout_s == 2.5);
        CHECK(c.idle_timeout_s == 30);
        CHECK(c.heartbeat_s == 0.5);
        CHECK(c.sse_retry_ms == 0);
        CHECK(c.sse_padding == 2048);
        CHECK(c.poll_timeout_s == 0);
        CHECK(c.max_topics == 8);
        CHECK(c.subscriber_queue_bytes == 65536);
        CHECK(c.cors_origins == std::vector<std::string>{"https://a.example"});
    };
    std::vector<std::string> storage;
    SUBCASE("separate value") {
        for (const auto& k : cases) {
            storage.push_back(std::string("--") + k.key);
            storage.push_back(k.value);
        }
    }
    SUBCASE("joined with '='") {
        for (const auto& k : cases) {
            storage.push_back(std::string("--") + k.key + "=" + k.value);
        }
    }
    std::vector<const char*> argv{"herald"};
    for (const auto& s : storage) {
        argv.push_back(s.c_str());
    }
    auto c = parse_config(static_cast<int>(argv.size()), argv.data());
    REQUIRE_MESSAGE(c.ok(), c.error().detail);
    check(*c);
}

TEST_CASE("config: a value may itself contain '=' or start with '-'") {
    CHECK(parse_ok({"--data=a=b"}).data_dir == "a=b");
    CHECK(parse_ok({"--data", "-dir"}).data_dir == "-dir");
}

TEST_CASE("config: the last of a repeated flag wins") {
    CHECK(parse_ok({"--threads", "2", "--threads=5"}).threads == 5);
}

TEST_CASE("config: --listen takes HOST:PORT, IPv6 in brackets, port 0 for any free port") {
    Config c = parse_ok({"--listen", "[::1]:0"});
    CHECK(c.listen_host == "::1");
    CHECK(c.listen_port == 0);
    c = parse_ok({"--listen=localhost:65535"});
    CHECK(c.listen_host == "localhost");
    CHECK(c.listen_port == 65535);
}

TEST_CASE("config: --listen without a valid port is an error") {
    for (std::string v :
         {"127.0.0.1", "127.0.0.1:", ":8080", "host:http", "host:65536", "host:-1", "host:80x"}) {
        CAPTURE(v);
        CHECK(parse_error({"--listen", v.c_str()}).find("--listen") != std::string::npos);
    }
}

TEST_CASE("config: --durability accepts sync, write and none only") {
    CHECK(parse_ok({"--durability", "sync"}).durability == storage::Durability::kSync);
    CHECK(parse_ok({"--durability", "write"}).durability == storage::Durability::kWrite);
    CHECK(parse_ok({"--durability", "none"}).durability == storage::Durability::kNone);
    CHECK(parse_error({"--durability", "bogus"}).find("--durability") != std::string::npos);
    parse_error({"--durability", "SYNC"});
    parse_error({"--durability="});
}

TEST_CASE("config: numbers outside their range or not numbers at all are errors") {
    struct Case {
        const char* flag;
        const char* value;
    };
    const Case bad[] = {
        {"--history", "0"},
        {"--history", "100000001"},
        {"--history", "-5"},
        {"--history", "1e3"},
        {"--history", "12abc"},
        {"--history", ""},
        {"--history-age", "-1"},
        {"--history-age", "3153600001"},
        {"--threads", "0"},
        {"--threads", "65"},
        {"--threads", "99999999999999999999"},
        {"--max-body", "0"},
        {"--max-body", "67108865"},
        {"--max-header-bytes", "255"},
        {"--max-connections", "0"},
        {"--request-timeout", "0"},
        {"--request-timeout", "0.09"},
        {"--request-timeout", "86401"},
        {"--idle-timeout", "inf"},
        {"--heartbeat", "-1"},
        {"--heartbeat", "1,5"},
        {"--sse-retry-ms", "86400001"},
        {"--sse-padding", "65537"},
        {"--poll-timeout", "120.5"},
        {"--max-topics", "4097"},
        {"--subscriber-queue-bytes", "4095"},
    };
    for (const auto& b : bad) {
        CAPTURE(std::string(b.flag));
        CAPTURE(std::string(b.value));
        std::string msg = parse_error({b.flag, b.value});
        CHECK(msg.find(b.flag) != std::string::npos);
    }
    // The limits themselves are fine.
    CHECK(parse_ok({"--threads", "64"}).threads == 64);
    CHECK(parse_ok({"--history", "1"}).retention.max_events_per_topic == 1);
    CHECK(parse_ok({"--poll-timeout", "120"}).poll_timeout_s == 120);
    CHECK(parse_ok({"--subscriber-queue-bytes", "4096"}).subscriber_queue_bytes == 4096);
}

TEST_CASE("config: NaN is not a number in range") {
    for (const char* flag :
         {"--request-timeout", "--idle-timeout", "--heartbeat", "--poll-timeout"}) {
        CAPTURE(std::string(flag));
        parse_error({flag, "nan"});
        parse_error({flag, "-nan"});
    }
}

TEST_CASE("config: an unknown flag, a flag without a value or a bare word is an error") {
    CHECK(parse_error({"--bogus", "1"}).find("--bogus") != std::string::npos);
    CHECK(parse_error({"--bogus=1"}).find("--bogus") != std::string::npos);
    CHECK(parse_error({"--threads"}).find("--threads") != std::string::npos);
    CHECK(parse_error({"stray"}).find("stray") != std::string::npos);
    CHECK(parse_error({"-t", "2"}).find("-t") != std::string::npos);
}

TEST_CASE("config: --cors-origins splits on commas and trims blanks") {
    CHECK(parse_ok({"--cors-origins", "*"}).cors_origins == std::vector<std::string>{"*"});
    CHECK(parse_ok({"--cors-origins", " https://a.example ,https://b.example:8443,\t,,"})
              .cors_origins ==
          std::vector<std::string>{"https://a.example", "https://b.example:8443"});
    CHECK(parse_ok({"--cors-origins="}).cors_origins.empty());
    // A later flag replaces the list, it does not extend it.
    CHECK(parse_ok({"--cors-origins", "a,b", "--cors-origins", "c"}).cors_origins ==
          std::vector<std::string>{"c"});
}

TEST_CASE("config: --help and -h ask for the usage text") {
    CHECK(parse_ok({"--help"}).show_help);
    CHECK(parse_ok({"-h"}).show_help);
    // Help wins over whatever follows it, even nonsense.
    CHECK(parse_ok({"--threads", "2", "--help", "--bogus"}).show_help);
}

TEST_CASE("config: the usage text lists every flag") {
    std::string usage = config_usage();
    for (const char* flag : {"--listen HOST:PORT",
                             "--data DIR",
                             "--history N",
                             "--history-age SECONDS",
                             "--durability MODE",
                             "--threads N",
                             "--max-body BYTES",
                             "--max-header-bytes BYTES",
                             "--max-connections N",
                             "--request-timeout SECONDS",
                             "--idle-timeout SECONDS",
                             "--heartbeat SECONDS",
                             "--sse-retry-ms MS",
                             "--sse-padding BYTES",
                             "--poll-timeout SECONDS",
                             "--max-topics N",
                             "--subscriber-queue-bytes BYTES",
                             "--cors-origins LIST",
                             "--config FILE",
                             "--help"}) {
        CAPTURE(std::string(flag));
        CHECK(usage.find(flag) != std::string::npos);
    }
}

TEST_CASE("config: a --config JSON file sets the same keys as the flags") {
    TempDir dir;
    std::string path = write_file(dir, "herald.json", R"({
        "listen": "0.0.0.0:9001",
        "data": "srv/herald",
        "history": 20,
        "history-age": 3600,
        "durability": "none",
        "threads": "2",
        "request-timeout": 1.5,
        "heartbeat": 2,
        "max-topics": 16,
        "cors-origins": ["https://a.example", "https://b.example"]
    })");
    Config c = parse_ok({"--config", path.c_str()});
    CHECK(c.listen_host == "0.0.0.0");
    CHECK(c.listen_port == 9001);
    CHECK(c.data_dir == "srv/herald");
    CHECK(c.retention.max_events_per_topic == 20);
    CHECK(c.retention.max_age_ms == 3600 * 1000);
    CHECK(c.durability == storage::Durability::kNone);
    CHECK(c.threads == 2);
    CHECK(c.request_timeout_s == 1.5);
    CHECK(c.heartbeat_s == 2);
    CHECK(c.max_topics == 16);
    CHECK(c.cors_origins == std::vector<std::string>{"https://a.example", "https://b.example"});
    // Keys the file does not set keep their defaults.
    CHECK(c.max_body_bytes == 1048576);
}

TEST_CASE("config: JSON numbers written as floats keep their exact value") {
    TempDir dir;
    std::string path = write_file(dir, "herald.json", R"({
        "idle-timeout": 12345.75,
        "request-timeout": 0.123456789,
        "max-body": 16777216.0,
        "history-age": 1e7
    })");
    Config c = parse_ok({"--config", path.c_str()});
    CHECK(c.idle_timeout_s == 12345.75);
    CHECK(c.request_timeout_s == 0.123456789);
    CHECK(c.max_body_bytes == 16777216);
    CHECK(c.retention.max_age_ms == 10000000LL * 1000);
}

TEST_CASE("config: flags override the --config file wherever they appear") {
    TempDir dir;
    std::string path =
        write_file(dir, "herald.json", R"({"threads": 2, "history": 20, "data": "from-file"})");
    std::string arg = "--config=" + path;
    SUBCASE("flags after --config") {
        Config c = parse_ok({arg.c_str(), "--threads", "7", "--data", "from-flag"});
        CHECK(c.threads == 7);
        CHECK(c.data_dir == "from-flag");
        CHECK(c.retention.max_events_per_topic == 20);
    }
    SUBCASE("flags before --config") {
        Config c = parse_ok({"--threads=7", "--data", "from-flag", "--config", path.c_str()});
        CHECK(c.threads == 7);
        CHECK(c.data_dir == "from-flag");
        CHECK(c.retention.max_events_per_topic == 20);
    }
}

TEST_CASE("config: a bad --config file is an error, not an exception") {
    TempDir dir;
    std::string path;
    std::string expect;
    SUBCASE("missing file") {
        path = dir.path() + "/missing.json";
        expect = "cannot read";
    }
    SUBCASE("not JSON") {
        path = write_file(dir, "c.json", "{\"threads\": 2");
        expect = "not a JSON object";
    }
    SUBCASE("JSON, but an array") {
        path = write_file(dir, "c.json", "[1, 2]");
        expect = "not a JSON object";
    }
    SUBCASE("JSON, but a string") {
        path = write_file(dir, "c.json", "\"threads\"");
        expect = "not a JSON object";
    }
    SUBCASE("unknown key") {
        path = write_file(dir, "c.json", R"({"threads": 2, "colour": "blue"})");
        expect = "unknown key \"colour\"";
    }
    SUBCASE("a config file may not name another") {
        path = write_file(dir, "c.json", R"({"config": "other.json"})");
        expect = "unknown key \"config\"";
    }
    SUBCASE("unsupported value type") {
        path = write_file(dir, "c.json", R"({"threads": true})");
        expect = "unsupported type";
    }
    SUBCASE("list of non-strings") {
        path = write_file(dir, "c.json", R"({"cors-origins": ["a", 2]})");
        expect = "list of strings";
    }
    SUBCASE("value out of range") {
        path = write_file(dir, "c.json", R"({"threads": 100})");
        expect = "--threads";
    }
    SUBCASE("bad durability") {
        path = write_file(dir, "c.json", R"({"durability": "bogus"})");
        expect = "--durability";
    }
    CAPTURE(path);
    std::string msg = parse_error({"--config", path.c_str()});
    CHECK_MESSAGE(msg.find(expect) != std::string::npos, msg);
}

TEST_CASE("config: --config without a file name is an error") {
    CHECK(parse_error({"--config"}).find("--config") != std::string::npos);
}

}  // namespace
}  // namespace herald::broker
