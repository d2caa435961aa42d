// Connection, its output queue, socket writer and I/O strategies at the socket level: a real
// loop with a real LoopContext and event log (LoopEnv), a Connection adopting one end of a real
// socket pair or loopback TCP connection, and the test as the peer on the other end.
#include "tests/unit/broker/broker_test_env.h"
#include "tests/unit/temp_dir.h"
#include "transports/connection.h"
#include "transports/tls.h"

#include <arpa/inet.h>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <functional>
#include <memory>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>
#include <uv.h>
#include <vector>

namespace herald::transports {
namespace {

using broker::CloseReason;
using broker::FramePtr;
using broker::make_frame;
using broker::test::LoopEnv;
using namespace std::chrono_literals;

// What a test session saw. Outlives the session, which the connection destroys.
struct Probe {
    std::string received;
    int drained = 0;
    int turn_ends = 0;
    int eofs = 0;
    bool destroyed = false;
    // Called from on_data, inside the connection's call into the session.
    std::function<void()> on_data;
};

// The session a test installs: records every call into a Probe.
class ProbeSession final : public Session {
public:
    ProbeSession(Connection& conn, Probe& probe) : conn_(conn), probe_(probe) {}
    ~ProbeSession() override { probe_.destroyed = true; }

    void on_data(const char* data, std::size_t len) override {
        probe_.received.append(data, len);
        if (probe_.on_data) {
            probe_.on_data();
        }
    }
    void on_turn_end() override { ++probe_.turn_ends; }
    void on_drained() override { ++probe_.drained; }
    void shutdown() override { conn_.close(CloseReason::kShutdown); }
    void on_peer_eof(Connection& conn) override {
        ++probe_.eofs;
        Session::on_peer_eof(conn);
    }

private:
    Connection& conn_;
    Probe& probe_;
};

// The probe of the session a TLS connection makes after its handshake: a SessionFactory is a
// plain function, so it finds the probe here. Test thread only.
Probe* tls_probe = nullptr;
std::string tls_alpn_seen;

std::unique_ptr<Session> probe_session_for_alpn(Connection& conn, std::string_view alpn) {
    tls_alpn_seen = std::string(alpn);
    return std::make_unique<ProbeSession>(conn, *tls_probe);
}

void set_nonblocking(int fd) {
    REQUIRE(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
}

// [0] for the connection, [1] for the peer.
std::array<int, 2> unix_pair(int type) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) == 0);
    return {fds[0], fds[1]};
}

// A loopback TCP connection, accepted as a listener would: [0] the accepted end, [1] the
// client's.
std::array<int, 2> tcp_pair() {
    const int lst = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lst >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(lst, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(lst, 1) == 0);
    REQUIRE(::getsockname(lst, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(client >= 0);
    REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    const int accepted = ::accept4(lst, nullptr, nullptr, SOCK_CLOEXEC);
    REQUIRE(accepted >= 0);
    ::close(lst);
    return {accepted, client};
}

std::size_t reason_index(CloseReason r) {
    return static_cast<std::size_t>(r);
}

// One Connection on a LoopEnv's loop over one end of a real socket; the test is the peer on
// the other end (non-blocking, without libuv). The loop driver runs, so each loop turn ends
// with the connection's flush as in a server worker. A test ends with finish(): every handle
// closed and uv_loop_close() == 0.
struct Wire {
    LoopEnv env;
    std::atomic<std::size_t> open_total{0};
    ConnectionList list{open_total, env.loop_metrics()};
    Probe probe;
    Connection* conn = nullptr;  // valid while open() is true
    int peer = -1;
    std::string peer_received;
    bool peer_eof = false;

    // Adopts fds[0] as an accepted connection and starts it (plaintext) unless told not to.
    explicit Wire(std::array<int, 2> fds, bool start = true) {
        peer = fds[1];
        set_nonblocking(peer);
        conn = new Connection(env.ctx(), list);
        REQUIRE(uv_tcp_open(reinterpret_cast<uv_tcp_t*>(conn->stream()), fds[0]) == 0);
        list.add(conn);
        env.driver().start();
        if (start) {
            conn->start(std::make_unique<ProbeSession>(*conn, probe));
        }
    }
    ~Wire() {
        // Only after a failed check: a connection left open would keep the loop alive.
        if (open()) {
            list.for_each([](Connection* c) { c->close(CloseReason::kShutdown); });
            env.run_until([&] { return !open(); }, 5s);
        }
        if (peer >= 0) {
            ::close(peer);
        }
    }
    Wire(const Wire&) = delete;
    Wire& operator=(const Wire&) = delete;

    // The connection has not been freed (its close callback has not run).
    bool open() const { return list.size() != 0; }

    // How many connections closed with `r`, and with any reason.
    std::uint64_t closed(CloseReason r) {
        return env.loop_metrics().connections_closed[reason_index(r)].get();
    }
    std::uint64_t closed_total() {
        std::uint64_t n = 0;
        for (const auto& c : env.loop_metrics().connections_closed) {
            n += c.get();
        }
        return n;
    }

    // One loop turn, without blocking: I/O callbacks, then the turn's end (the flush).
    void turn() { uv_run(env.loop(), UV_RUN_NOWAIT); }

    // Reads what the peer's end holds; notes EOF.
    void peer_read() {
        char buf[64 * 1024];
        for (;;) {
            const ssize_t n = ::recv(peer, buf, sizeof buf, 0);
            if (n > 0) {
                peer_received.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0) {
                peer_eof = true;
            }
            return;
        }
    }

    // Each message waiting at the peer's end, as one recv(2) each returns it (a SOCK_SEQPACKET
    // record is what one write sent).
    std::vector<std::string> peer_records() {
        std::vector<std::string> out;
        char buf[64 * 1024];
        for (;;) {
            const ssize_t n = ::recv(peer, buf, sizeof buf, 0);
            if (n <= 0) {
                return out;
            }
            out.emplace_back(buf, static_cast<std::size_t>(n));
        }
    }

    // Runs loop turns, the peer reading in between when `reading`, until `done()` or 20 s.
    bool pump(const std::function<bool()>& done, bool reading) {
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (!done() && std::chrono::steady_clock::now() < deadline) {
            if (reading) {
                peer_read();
            }
            turn();
            if (done()) {
                break;
            }
            pollfd p[2] = {{uv_backend_fd(env.loop()), POLLIN, 0}, {peer, POLLIN, 0}};
            ::poll(p, reading ? 2 : 1, 5);
        }
        return done();
    }

    // Queues `frame`, then runs one turn.
    void send(const FramePtr& frame) {
        conn->queue(frame);
        turn();
    }

    // With the peer not reading: queues 4 KiB frames, one per turn, until the
    // connection holds at least `target` unsent bytes after its flush (the kernel took what it
    // could; the rest is in flight in libuv). Returns everything queued, in order.
    std::string fill_until(std::size_t target) {
        std::string all;
        for (int i = 0; conn->queued_bytes() < target; ++i) {
            REQUIRE_MESSAGE(all.size() < (std::size_t{64} << 20), "the kernel never pushed back");
            std::string bytes(4096, static_cast<char>('a' + i % 26));
            bytes.replace(0, std::to_string(i).size(), std::to_string(i));
            all += bytes;
            send(make_frame(std::move(bytes)));
        }
        return all;
    }

    // Closes what is still open, lets libuv release every handle and closes the loop.
    void finish() {
        if (open()) {
            conn->close(CloseReason::kShutdown);
        }
        CHECK(env.run_until([&] { return !open(); }));
        env.close_handles();
        CHECK(env.close_loop() == 0);
    }
};

TEST_CASE("connection: queued shared frames leave in one gathered write, in order") {
    // Each write(2)/sendmsg(2) on a SOCK_SEQPACKET socket is one record at the peer.
    Wire w(unix_pair(SOCK_SEQPACKET));
    const FramePtr a = make_frame("data: a\n\n");
    const FramePtr b = make_frame("data: bb\n\n");
    const FramePtr c = make_frame("xxdata: ccc\n\nxx");
    w.conn->queue(a);
    w.conn->queue_copy("\r\n");
    w.conn->queue(b);
    w.conn->queue_slice(c, 2, c->bytes.size() - 4);
    const std::string expected = "data: a\n\n\r\ndata: bb\n\ndata: ccc\n\n";
    CHECK(w.conn->queued_bytes() == expected.size());
    CHECK(w.peer_received.empty());  // nothing leaves before the turn ends

    w.turn();
    CHECK(w.conn->queued_bytes() == 0);
    CHECK(w.peer_records() == std::vector<std::string>{expected});
    // The frames were held only until the kernel took their bytes.
    CHECK(a.use_count() == 1);
    CHECK(b.use_count() == 1);
    CHECK(c.use_count() == 1);
    CHECK(w.env.loop_metrics().bytes_out.get() == expected.size());

    SUBCASE("a lone frame is one write too") {
        w.send(a);
        CHECK(w.peer_records() == std::vector<std::string>{a->bytes});
        CHECK(a.use_count() == 1);
    }
    SUBCASE("what is queued in a later turn is a later write") {
        w.send(b);
        w.send(a);
        CHECK(w.peer_records() == std::vector<std::string>{b->bytes, a->bytes});
    }
    CHECK(w.closed_total() == 0);
    w.finish();
    CHECK(w.closed(CloseReason::kShutdown) == 1);
}

TEST_CASE("connection: bytes from the peer reach the session; its EOF closes the connection") {
    Wire w(tcp_pair());
    CHECK(::send(w.peer, "GET / HTTP/1.1\r\n", 16, 0) == 16);
    CHECK(w.pump([&] { return w.probe.received.size() == 16; }, false));
    CHECK(w.probe.received == "GET / HTTP/1.1\r\n");
    CHECK(w.env.loop_metrics().bytes_in.get() == 16);

    ::shutdown(w.peer, SHUT_WR);
    CHECK(w.pump([&] { return !w.open(); }, true));
    CHECK(w.probe.eofs == 1);
    CHECK(w.probe.destroyed);
    CHECK(w.closed(CloseReason::kPeerClosed) == 1);
    CHECK(w.closed_total() == 1);
    CHECK(w.pump([&] { return w.peer_eof; }, true));
    w.finish();
}

TEST_CASE("connection: a peer that stops reading crosses the low watermark; on_drained is "
          "called once per fall below it") {
    Wire w(unix_pair(SOCK_STREAM));
    const std::size_t low = w.env.ctx().watermarks().low();
    REQUIRE(low == 16 * 1024);

    // Frames below the low watermark that the kernel takes at once: the output never reached
    // it, so there is no drain to report.
    for (int i = 0; i < 8; ++i) {
        w.send(make_frame(std::string(low * 3 / 4, 'x')));
        CHECK(w.conn->queued_bytes() == 0);
        w.peer_read();
    }
    CHECK(w.pump([&] { return w.peer_received.size() == 8 * (low * 3 / 4); }, true));
    CHECK(w.probe.drained == 0);

    // The peer stops reading: once the kernel's buffers are full, the bytes stay queued.
    w.peer_received.clear();
    std::string sent = w.fill_until(low + 4096);
    CHECK(w.conn->queued_bytes() >= low);
    w.turn();
    CHECK(w.probe.drained == 0);

    // It reads again: everything arrives in order, and the fall below the low watermark is
    // reported once, not once per completed write.
    CHECK(w.pump([&] { return w.conn->queued_bytes() == 0; }, true));
    CHECK(w.probe.drained == 1);
    CHECK(w.pump([&] { return w.peer_received.size() == sent.size(); }, true));
    CHECK((w.peer_received == sent));

    // Staying below it: no further call.
    for (int i = 0; i < 8; ++i) {
        w.send(make_frame(std::string(1024, 'y')));
        w.peer_read();
    }
    CHECK(w.pump([&] { return w.conn->queued_bytes() == 0; }, true));
    CHECK(w.probe.drained == 1);

    // Crossing it again: one more.
    w.peer_read();
    w.fill_until(low + 4096);
    CHECK(w.probe.drained == 1);
    CHECK(w.pump([&] { return w.conn->queued_bytes() == 0; }, true));
    CHECK(w.probe.drained == 2);

    CHECK(w.closed_total() == 0);
    w.finish();
}

TEST_CASE("connection: close(reason) is idempotent and counts the first reason") {
    SUBCASE("from outside the session") {
        Wire w(unix_pair(SOCK_STREAM));
        const FramePtr f = make_frame("never sent");
        w.conn->close(CloseReason::kProtocolError);
        CHECK(w.probe.destroyed);  // the session leaves at once: its exchanges end now
        w.conn->close(CloseReason::kPeerReset);
        w.conn->close(CloseReason::kProtocolError);
        w.conn->close_after_flush(CloseReason::kDone);
        w.conn->queue(f);  // ignored once closing
        CHECK(w.conn->queued_bytes() == 0);
        CHECK(w.conn->closing());
        CHECK(w.open());  // freed only in libuv's close callback
        CHECK(w.pump([&] { return !w.open(); }, false));
        CHECK(w.closed(CloseReason::kProtocolError) == 1);
        CHECK(w.closed_total() == 1);
        CHECK(f.use_count() == 1);
        CHECK(w.pump([&] { return w.peer_eof; }, true));
        CHECK(w.peer_received.empty());
        CHECK(w.env.loop_metrics().connections.get() == 0);
        CHECK(w.open_total == 0);
        w.finish();
    }
    SUBCASE("from inside the session's callback") {
        Wire w(unix_pair(SOCK_STREAM));
        bool alive_in_callback = false;
        w.probe.on_data = [&] {
            w.conn->close(CloseReason::kProtocolError);
            w.conn->close(CloseReason::kInternal);
            // The session is still running: it dies when its callback returned.
            alive_in_callback = !w.probe.destroyed;
        };
        CHECK(::send(w.peer, "junk", 4, 0) == 4);
        CHECK(w.pump([&] { return !w.open(); }, false));
        CHECK(alive_in_callback);
        CHECK(w.probe.destroyed);
        CHECK(w.closed(CloseReason::kProtocolError) == 1);
        CHECK(w.closed_total() == 1);
        w.finish();
    }
}

TEST_CASE("connection: a peer that reads nothing for --send-timeout is closed with "
          "kSendTimeout") {
    Wire w(unix_pair(SOCK_STREAM));
    w.env.config().send_timeout_s = 0.2;

    // Nothing in flight: an idle connection is not a stalled one.
    w.env.run_for(300ms);
    w.conn->on_tick(w.env.ctx().now_ms());
    CHECK(w.closed_total() == 0);

    w.fill_until(1);
    const std::uint64_t stalled_at = w.env.ctx().now_ms();
    w.conn->on_tick(stalled_at);
    CHECK(w.closed_total() == 0);
    w.env.run_for(300ms);
    REQUIRE(w.env.ctx().now_ms() - stalled_at > 200);
    w.conn->on_tick(w.env.ctx().now_ms());
    CHECK(w.closed(CloseReason::kSendTimeout) == 1);
    CHECK(w.closed_total() == 1);
    CHECK(w.probe.destroyed);
    CHECK(w.pump([&] { return !w.open(); }, false));
    w.finish();
}

TEST_CASE("connection: close_after_flush sends everything queued first") {
    SUBCASE("with bytes queued behind a peer that does not read") {
        Wire w(unix_pair(SOCK_STREAM));
        std::string sent = w.fill_until(std::size_t{1} << 20);
        const FramePtr last = make_frame("the last frame\n");
        w.conn->queue(last);
        sent += last->bytes;
        const int turn_ends = w.probe.turn_ends;
        w.conn->close_after_flush(CloseReason::kDone);
        CHECK(w.conn->closing());
        w.env.run_for(50ms);
        CHECK(w.open());
        CHECK(w.closed_total() == 0);
        CHECK(w.probe.turn_ends == turn_ends);  // the session is done producing

        CHECK(w.pump([&] { return w.peer_eof; }, true));
        CHECK(w.peer_received.size() == sent.size());
        CHECK((w.peer_received == sent));
        CHECK(w.closed(CloseReason::kDone) == 1);
        CHECK(w.closed_total() == 1);
        CHECK(w.probe.drained == 0);
        CHECK(last.use_count() == 1);
        w.finish();
    }
    SUBCASE("with nothing queued it closes at once, with its reason") {
        Wire w(unix_pair(SOCK_STREAM));
        w.conn->close_after_flush(CloseReason::kIdleTimeout);
        CHECK(w.closed(CloseReason::kIdleTimeout) == 1);
        CHECK(w.pump([&] { return w.peer_eof; }, true));
        CHECK(w.peer_received.empty());
        w.finish();
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

// A self-signed certificate for localhost and its key, as PEM files in a temp dir.
struct TestCert {
    herald::test::TempDir dir{"herald-connection-test"};
    std::string cert = dir.path() + "/cert.pem";
    std::string key = dir.path() + "/key.pem";

    TestCert() {
        EVP_PKEY* pkey = EVP_EC_gen("P-256");
        REQUIRE(pkey != nullptr);
        X509* x = X509_new();
        REQUIRE(x != nullptr);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, pkey);
        X509_NAME* name = X509_get_subject_name(x);
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
        X509_set_issuer_name(x, name);
        REQUIRE(X509_sign(x, pkey, EVP_sha256()) > 0);
        BIO* c = BIO_new_file(cert.c_str(), "w");
        BIO* k = BIO_new_file(key.c_str(), "w");
        REQUIRE((c != nullptr && k != nullptr));
        CHECK(PEM_write_bio_X509(c, x) == 1);
        CHECK(PEM_write_bio_PrivateKey(k, pkey, nullptr, nullptr, 0, nullptr, nullptr) == 1);
        BIO_free(c);
        BIO_free(k);
        X509_free(x);
        EVP_PKEY_free(pkey);
    }
};

// The peer's TLS client over the Wire's peer socket (non-blocking).
struct TlsClient {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL* ssl = nullptr;

    explicit TlsClient(int fd) {
        REQUIRE(ctx != nullptr);
        ssl = SSL_new(ctx);
        REQUIRE(ssl != nullptr);
        static const unsigned char kAlpn[] = "\x08http/1.1";
        SSL_set_alpn_protos(ssl, kAlpn, sizeof kAlpn - 1);
        SSL_set_fd(ssl, fd);
        SSL_set_connect_state(ssl);
    }
    ~TlsClient() {
        SSL_free(ssl);
        SSL_CTX_free(ctx);
    }
    TlsClient(const TlsClient&) = delete;
    TlsClient& operator=(const TlsClient&) = delete;

    bool handshake() { return SSL_do_handshake(ssl) == 1; }
    // Decrypts what arrived; true once the server's close_notify was read.
    bool read(std::string& out) {
        char buf[16 * 1024];
        for (;;) {
            const int n = SSL_read(ssl, buf, sizeof buf);
            if (n > 0) {
                out.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            return SSL_get_error(ssl, n) == SSL_ERROR_ZERO_RETURN;
        }
    }
};

TEST_CASE("connection over TLS: the handshake makes the session by ALPN; plaintext both ways; "
          "close_after_flush ends with the data, then close_notify") {
    TestCert cert;
    auto tls = TlsContext::load(cert.cert, cert.key);
    REQUIRE_MESSAGE(tls.ok(), tls.error().detail);
    Wire w(unix_pair(SOCK_STREAM), false);
    tls_probe = &w.probe;
    tls_alpn_seen.clear();
    w.conn->start_tls(std::make_unique<TlsChannel>((*tls)->new_ssl()), &probe_session_for_alpn);
    CHECK(w.conn->is_tls());
    CHECK(w.env.loop_metrics().tls_connections.get() == 1);

    TlsClient client(w.peer);
    CHECK(w.pump([&] { return client.handshake(); }, false));

    const std::string request = "GET /topics/a HTTP/1.1\r\n\r\n";
    REQUIRE(SSL_write(client.ssl, request.data(), static_cast<int>(request.size())) ==
            static_cast<int>(request.size()));
    CHECK(w.pump([&] { return w.probe.received == request; }, false));
    // The server's side of a TLS 1.3 handshake ends after the client's: only now is it sure to
    // have made the session.
    CHECK(tls_alpn_seen == "http/1.1");

    // Small pieces and a large frame, gathered into records, arrive as queued.
    const FramePtr big = make_frame(std::string(40 * 1024, 'b'));
    w.conn->queue_copy("HTTP/1.1 200 OK\r\n\r\n");
    w.conn->queue(make_frame("data: 1\n\n"));
    w.conn->queue(big);
    w.conn->queue_slice(make_frame("..data: 2\n\n.."), 2, 9);
    const std::string expected = "HTTP/1.1 200 OK\r\n\r\ndata: 1\n\n" + big->bytes + "data: 2\n\n";
    w.conn->close_after_flush(CloseReason::kDone);
    std::string plain;
    bool close_notify = false;
    CHECK(w.pump(
        [&] {
            close_notify = close_notify || client.read(plain);
            return close_notify && !w.open();
        },
        false));
    CHECK(plain.size() == expected.size());
    CHECK((plain == expected));
    CHECK(w.closed(CloseReason::kDone) == 1);
    CHECK(w.closed_total() == 1);
    CHECK(w.env.loop_metrics().tls_connections.get() == 0);
    CHECK(w.env.loop_metrics().tls_handshake_errors.get() == 0);
    tls_probe = nullptr;
    w.finish();
}

TEST_CASE("connection over TLS: a handshake not done within --request-timeout closes with "
          "kTlsError") {
    TestCert cert;
    auto tls = TlsContext::load(cert.cert, cert.key);
    REQUIRE_MESSAGE(tls.ok(), tls.error().detail);
    Wire w(unix_pair(SOCK_STREAM), false);
    w.env.config().request_timeout_s = 0.2;
    tls_probe = &w.probe;
    w.conn->start_tls(std::make_unique<TlsChannel>((*tls)->new_ssl()), &probe_session_for_alpn);

    w.conn->on_tick(w.env.ctx().now_ms());
    CHECK(w.closed_total() == 0);
    w.env.run_for(300ms);
    w.conn->on_tick(w.env.ctx().now_ms());
    CHECK(w.closed(CloseReason::kTlsError) == 1);
    CHECK(w.closed_total() == 1);
    CHECK(w.env.loop_metrics().tls_handshake_errors.get() == 1);
    CHECK_FALSE(w.probe.destroyed);  // no session was ever made
    CHECK(w.pump([&] { return !w.open(); }, false));
    CHECK(w.env.loop_metrics().tls_connections.get() == 0);
    tls_probe = nullptr;
    w.finish();
}

}  // namespace
}  // namespace herald::transports
