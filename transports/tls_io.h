// TlsIo: a connection's bytes through TLS.
#pragma once

#include "transports/connection.h"
#include "transports/connection_io.h"
#include "transports/tls.h"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace herald::transports {

class OutputQueue;

// TLS over the connection's socket: ciphertext read from the socket goes through the
// connection's TlsChannel, and the plaintext to its session, which is made once the handshake
// chose a protocol by ALPN; queued plaintext is encrypted at flush and the records leave
// through the same socket writer as plaintext does. A handshake not done within
// --request-timeout closes the connection (kTlsError). Counted in the TLS connections gauge
// while it lives. Owned by its Connection; loop thread only; dies with it.
class TlsIo final : public ConnectionIo {
public:
    TlsIo(Connection& conn, std::unique_ptr<TlsChannel> tls, SessionFactory make_session);
    ~TlsIo() override;
    TlsIo(const TlsIo&) = delete;
    TlsIo& operator=(const TlsIo&) = delete;

    void on_read(const char* data, std::size_t len) override;
    void flush() override;
    bool flush_due_on_close() const override;
    void on_tick(std::uint64_t now_ms) override;
    bool is_tls() const override { return true; }

private:
    bool finish_handshake();
    bool encrypt(OutputQueue& q);

    Connection& conn_;
    broker::LoopMetrics& metrics_;
    std::unique_ptr<TlsChannel> tls_;
    SessionFactory make_session_;
    std::uint64_t handshake_deadline_ms_;  // 0 once the handshake is done
};

}  // namespace herald::transports
