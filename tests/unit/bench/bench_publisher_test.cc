#include "tools/bench/bench_publisher.h"

#include <doctest/doctest.h>
#include <string>
#include <vector>

namespace herald::bench {

TEST_CASE("publish requests: head per topic, Content-Length of the filled-in body") {
    Options o;
    o.pub_headers = {"X-Bench: 1"};
    UrlTemplate url;
    std::string error;
    REQUIRE(UrlTemplate::parse("http://127.0.0.1:8080/topics/{topic}", url, error));
    const PublishRequests requests(o, url, {"t0", "t1"});
    std::string out = "left over";
    requests.write(1, "hb:1:2:m", out);
    CHECK(out == "POST /topics/t1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                 "Content-Type: text/plain\r\nX-Bench: 1\r\nContent-Length: 8\r\n\r\nhb:1:2:m");
}

TEST_CASE("publish requests: a Pushpin-style body template names the topic") {
    Options o;
    o.pub_content_type = "application/json";
    o.pub_body = R"({"items":[{"channel":"{topic}","content":"{data}"}]})";
    UrlTemplate url;
    std::string error;
    REQUIRE(UrlTemplate::parse("http://127.0.0.1:5561/publish/", url, error));
    const PublishRequests requests(o, url, {"c0"});
    std::string out;
    requests.write(0, "DATA", out);
    const std::string body = R"({"items":[{"channel":"c0","content":"DATA"}]})";
    CHECK(out == "POST /publish/ HTTP/1.1\r\nHost: 127.0.0.1:5561\r\n"
                 "Content-Type: application/json\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n" + body);
}

TEST_CASE("publish requests: an empty content type sends no Content-Type") {
    Options o;
    o.pub_content_type.clear();
    o.pub_method = "PUT";
    UrlTemplate url;
    std::string error;
    REQUIRE(UrlTemplate::parse("http://localhost/pub?id={topic}", url, error));
    const PublishRequests requests(o, url, {"x"});
    std::string out;
    requests.write(0, "", out);
    CHECK(out == "PUT /pub?id=x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
}

TEST_CASE("fixed rate: publish n is due at start + n / rate, late ones do not shift it") {
    FixedRatePacer p;
    p.start(1'000'000'000, 100);
    CHECK(p.next_due() == 1'000'000'000);
    p.sent();
    CHECK(p.next_due() == 1'010'000'000);
    p.sent();
    p.sent();
    CHECK(p.next_due() == 1'030'000'000);
    CHECK_FALSE(p.late(1'030'000'000));
    CHECK_FALSE(p.late(1'031'000'000));
    CHECK(p.late(1'031'000'001));
    p.sent();  // sent late: the schedule stays on its grid
    CHECK(p.next_due() == 1'040'000'000);
}

TEST_CASE("fixed rate: fractional rates keep the exact schedule") {
    FixedRatePacer p;
    p.start(0, 3);
    for (int i = 0; i < 3; ++i) {
        p.sent();
    }
    CHECK(p.next_due() == 1'000'000'000);
}

}  // namespace herald::bench
