#include "transports/tls_io.h"

#include "transports/output_queue.h"

#include <string>
#include <utility>

namespace herald::transports {

namespace {
// Plaintext pieces smaller than this are gathered into one TLS record rather than each
// becoming a record of its own (an HTTP/2 frame header is 9 bytes).
constexpr std::size_t kTlsGather = 4096;
}  // namespace

TlsIo::TlsIo(Connection& conn, std::unique_ptr<TlsChannel> tls, SessionFactory make_session)
    : conn_(conn), metrics_(conn.ctx().metrics()), tls_(std::move(tls)),
      make_session_(make_session),
      // A client that connects and never finishes the handshake holds a socket: same limit
      // as for a request that never completes.
      handshake_deadline_ms_(
          conn.ctx().now_ms() +
          static_cast<std::uint64_t>(conn.ctx().config().request_timeout_s * 1000)) {
    metrics_.tls_connections.add();
}

TlsIo::~TlsIo() {
    metrics_.tls_connections.sub();  // from ~Connection: not through conn_
}

void TlsIo::on_read(const char* data, std::size_t len) {
    // The ciphertext is copied into the engine, so the loop's read buffer is free again for
    // the plaintext.
    tls_->feed(data, len);
    if (!tls_->handshake_done() && !finish_handshake()) {
        return;
    }
    char* buf = conn_.ctx().read_buffer();
    const std::size_t cap = conn_.ctx().read_buffer_size();
    while (!conn_.closing()) {
        std::size_t n = 0;
        auto st = tls_->read(buf, cap, &n);
        if (st == TlsChannel::Status::kOk) {
            conn_.deliver(buf, n);
            continue;
        }
        if (st == TlsChannel::Status::kClosed || st == TlsChannel::Status::kError) {
            // close_notify or a broken record: like EOF or a reset
            conn_.close(st == TlsChannel::Status::kClosed ? broker::CloseReason::kPeerClosed
                                                          : broker::CloseReason::kPeerReset);
            return;
        }
        break;
    }
    if (!conn_.closing_ && tls_->output_size() > 0) {
        conn_.want_turn_end();  // e.g. session tickets, a key update
    }
}

// Advances the handshake with the bytes fed so far: true once it is done and the session for
// the protocol ALPN chose is installed.
bool TlsIo::finish_handshake() {
    auto st = tls_->handshake();
    if (st == TlsChannel::Status::kWantMore) {
        if (tls_->output_size() > 0) {
            conn_.want_turn_end();
        }
        return false;
    }
    if (st != TlsChannel::Status::kOk) {
        metrics_.tls_handshake_errors.add();
        // The alert, if the engine wrote one, tells the client why.
        conn_.close_after_flush(broker::CloseReason::kTlsError);
        return false;
    }
    handshake_deadline_ms_ = 0;
    auto session = make_session_(conn_, tls_->alpn());
    if (!session) {
        conn_.close(broker::CloseReason::kInternal);
        return false;
    }
    conn_.open_session(std::move(session));
    conn_.want_turn_end();  // the handshake's last flight
    return true;
}

void TlsIo::flush() {
    OutputQueue& q = conn_.queue_;
    if (!q.empty() && tls_->handshake_done() && !encrypt(q)) {
        conn_.close(broker::CloseReason::kInternal);
        return;
    }
    if (conn_.close_after_flush_) {
        tls_->shutdown();
    }
    if (tls_->output_size() > 0) {
        conn_.writer_.send(tls_->take_output());
    }
}

// Moves the queued plaintext into the engine (and empties the queue): false if the engine
// refused some of it.
bool TlsIo::encrypt(OutputQueue& q) {
    // Small pieces are gathered so that a record carries more than a frame header.
    std::string small;
    bool ok = true;
    q.for_each_piece([&](const char* b, std::size_t len) {
        if (len >= kTlsGather) {
            if (!small.empty()) {
                ok = ok && tls_->write(small.data(), small.size());
                small.clear();
            }
            ok = ok && tls_->write(b, len);
        } else {
            small.append(b, len);
            if (small.size() >= kTlsGather) {
                ok = ok && tls_->write(small.data(), small.size());
                small.clear();
            }
        }
    });
    if (!small.empty()) {
        ok = ok && tls_->write(small.data(), small.size());
    }
    q.clear();
    return ok;
}

bool TlsIo::flush_due_on_close() const {
    return tls_->handshake_done() || tls_->output_size() > 0;
}

void TlsIo::on_tick(std::uint64_t now_ms) {
    if (handshake_deadline_ms_ != 0 && now_ms >= handshake_deadline_ms_) {
        metrics_.tls_handshake_errors.add();
        conn_.close(broker::CloseReason::kTlsError);
    }
}

}  // namespace herald::transports
