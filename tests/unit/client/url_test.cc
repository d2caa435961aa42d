#include "tools/client/url.h"

#include <doctest/doctest.h>

namespace herald::client {

TEST_CASE("url: the default base URL parses to the broker's default listen address") {
    const auto url = parse_url(kDefaultUrl);
    REQUIRE(url.ok());
    CHECK(url->host == "127.0.0.1");
    CHECK(url->port == "8080");
    CHECK(url->path_prefix.empty());
    CHECK(url->authority() == "127.0.0.1:8080");
}

TEST_CASE("url: accepted forms") {
    SUBCASE("no port means 80") {
        const auto url = parse_url("http://example.com");
        REQUIRE(url.ok());
        CHECK(url->port == "80");
    }
    SUBCASE("scheme is case-insensitive and a trailing slash is dropped") {
        const auto url = parse_url("HTTP://broker:9000/");
        REQUIRE(url.ok());
        CHECK(url->host == "broker");
        CHECK(url->port == "9000");
        CHECK(url->path_prefix.empty());
    }
    SUBCASE("a path prefix is kept without its trailing slash") {
        const auto url = parse_url("http://proxy:80/herald/v1/");
        REQUIRE(url.ok());
        CHECK(url->path_prefix == "/herald/v1");
    }
    SUBCASE("IPv6 addresses are bracketed in the URL and in Host, not in host") {
        const auto url = parse_url("http://[::1]:8081");
        REQUIRE(url.ok());
        CHECK(url->host == "::1");
        CHECK(url->authority() == "[::1]:8081");
    }
}

TEST_CASE("url: refused forms say why") {
    for (const char* bad : {"https://127.0.0.1:8443", "127.0.0.1:8080", "http://", "http://:80",
                            "http://host:", "http://host:0", "http://host:65536", "http://host:8x",
                            "http://::1:80", "http://[::1", "http://[::1]x", "http://u@host",
                            "http://host/?a=b", "http://host#frag"}) {
        CAPTURE(bad);
        const auto url = parse_url(bad);
        REQUIRE_FALSE(url.ok());
        CHECK(url.error().code == proto::ErrorCode::kInvalidArgument);
        CHECK(url.error().detail.find(bad) != std::string::npos);
    }
}

TEST_CASE("url: percent-encoding keeps only unreserved characters") {
    CHECK(percent_encode("AZaz09-._~") == "AZaz09-._~");
    CHECK(percent_encode("a b&c=d/e?f#g+h%") == "a%20b%26c%3Dd%2Fe%3Ff%23g%2Bh%25");
    CHECK(percent_encode("\xC3\xA9") == "%C3%A9");
    CHECK(percent_encode(std::string_view("\0", 1)) == "%00");
    CHECK(percent_encode("").empty());
}

TEST_CASE("url: path encoding keeps '/' so topic segments stay path segments") {
    CHECK(percent_encode_path("chat/room-1") == "chat/room-1");
    CHECK(percent_encode_path("a b/c?d") == "a%20b/c%3Fd");
}

TEST_CASE("url: make_target joins encoded query parameters in order") {
    CHECK(make_target("/topics/a", {}) == "/topics/a");
    CHECK(make_target("/subscribe", {{"topic", "a"}, {"topic", "b/c"}, {"since", "0"}}) ==
          "/subscribe?topic=a&topic=b%2Fc&since=0");
    CHECK(make_target("/topics/a", {{"type", "x y&z"}}) == "/topics/a?type=x%20y%26z");
}

}  // namespace herald::client
