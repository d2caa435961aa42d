#include "broker/config.h"

#include <doctest/doctest.h>
#include <initializer_list>
#include <vector>

namespace herald::broker {
namespace {

proto::Result<Config> parse(std::initializer_list<const char*> args) {
    std::vector<const char*> argv{"herald"};
    argv.insert(argv.end(), args.begin(), args.end());
    return parse_config(static_cast<int>(argv.size()), argv.data());
}

TEST_CASE("config: HTTPS and HTTP/2 are off and 1000 streams by default") {
    auto c = parse({});
    REQUIRE(c.ok());
    CHECK(c->tls_listen_host.empty());
    CHECK(c->tls_cert.empty());
    CHECK(c->tls_key.empty());
    CHECK(c->h2_max_streams == 1000);
}

TEST_CASE("config: --tls-listen takes HOST:PORT with its certificate and key") {
    auto c = parse({"--tls-listen", "[::1]:8443", "--tls-cert", "c.pem", "--tls-key=k.pem",
                    "--h2-max-streams", "50"});
    REQUIRE_MESSAGE(c.ok(), c.error().detail);
    CHECK(c->tls_listen_host == "::1");
    CHECK(c->tls_listen_port == 8443);
    CHECK(c->tls_cert == "c.pem");
    CHECK(c->tls_key == "k.pem");
    CHECK(c->h2_max_streams == 50);
    CHECK(c->listen_port == 8080);  // the plain listener is untouched
}

TEST_CASE("config: --tls-listen without a certificate or key is an error") {
    SUBCASE("no key") {
        auto c = parse({"--tls-listen", "127.0.0.1:0", "--tls-cert", "c.pem"});
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().detail.find("--tls-key") != std::string::npos);
    }
    SUBCASE("no certificate") {
        CHECK_FALSE(parse({"--tls-listen", "127.0.0.1:0", "--tls-key", "k.pem"}).ok());
    }
    SUBCASE("bad address") {
        auto c = parse({"--tls-listen", "8443", "--tls-cert", "c", "--tls-key", "k"});
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().detail.find("--tls-listen") != std::string::npos);
    }
}

TEST_CASE("config: --h2-max-streams is bounded") {
    CHECK_FALSE(parse({"--h2-max-streams", "0"}).ok());
    CHECK_FALSE(parse({"--h2-max-streams", "100001"}).ok());
    CHECK_FALSE(parse({"--h2-max-streams", "ten"}).ok());
    CHECK(parse({"--h2-max-streams", "1"}).ok());
}

}  // namespace
}  // namespace herald::broker
