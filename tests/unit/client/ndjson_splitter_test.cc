#include "tools/client/ndjson_splitter.h"

#include <doctest/doctest.h>
#include <string>
#include <vector>

namespace herald::client {

namespace {

std::vector<std::string> split(std::string_view stream, std::size_t piece,
                               std::size_t* pending = nullptr) {
    NdjsonSplitter splitter;
    std::vector<std::string> lines;
    for (std::size_t at = 0; at < stream.size(); at += piece) {
        REQUIRE(splitter
                    .feed(stream.substr(at, piece),
                          [&](std::string_view line) { lines.emplace_back(line); })
                    .ok());
    }
    if (pending != nullptr) {
        *pending = splitter.pending_bytes();
    }
    return lines;
}

}  // namespace

TEST_CASE("ndjson splitter: frames by newline whatever the pieces") {
    const std::string stream = "{\"id\":\"1\",\"data\":\"a\"}\n{\"id\":\"2\",\"data\":\"b\\nc\"}\n";
    for (const std::size_t piece : {1, 2, 3, 5, 7, 1000}) {
        CAPTURE(piece);
        const auto lines = split(stream, piece);
        REQUIRE(lines.size() == 2);
        CHECK(lines[0] == R"({"id":"1","data":"a"})");
        CHECK(lines[1] == R"({"id":"2","data":"b\nc"})");
    }
}

TEST_CASE("ndjson splitter: blank heartbeat lines are skipped") {
    for (const std::size_t piece : {1, 4, 1000}) {
        CAPTURE(piece);
        const auto lines = split("\n\n{\"a\":1}\n\n \n\r\n{\"b\":2}\n\n", piece);
        REQUIRE(lines.size() == 2);
        CHECK(lines[0] == R"({"a":1})");
        CHECK(lines[1] == R"({"b":2})");
    }
}

TEST_CASE("ndjson splitter: CR LF line ends are tolerated") {
    const auto lines = split("{\"a\":1}\r\n{\"b\":2}\r\n", 3);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == R"({"a":1})");
}

TEST_CASE("ndjson splitter: a line without its newline waits") {
    std::size_t pending = 0;
    const auto lines = split("{\"a\":1}\n{\"b\":", 2, &pending);
    REQUIRE(lines.size() == 1);
    CHECK(pending == 5);
}

TEST_CASE("ndjson splitter: a line past the limit is an error") {
    NdjsonSplitter splitter(8);
    const auto sink = [](std::string_view) {};
    CHECK(splitter.feed("12345", sink).ok());
    const auto st = splitter.feed("6789", sink);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == proto::ErrorCode::kTooLarge);
}

}  // namespace herald::client
