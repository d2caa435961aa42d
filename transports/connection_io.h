// ConnectionIo: how a connection's bytes cross its socket, the one place where plaintext and
// TLS differ. PlainIo is here; TlsIo is in tls_io.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace herald::transports {

class Connection;

// The I/O strategy of one Connection, chosen when it starts (Connection::start: PlainIo,
// Connection::start_tls: TlsIo). The connection calls it once per read and once per flush,
// never per queued frame. Owned by its Connection; loop thread only; dies with it.
class ConnectionIo {
public:
    virtual ~ConnectionIo() = default;

    // Bytes read from the socket, in the loop's shared read buffer (valid during the call).
    virtual void on_read(const char* data, std::size_t len) = 0;
    // End of a loop turn: sends what the connection's output queue holds.
    virtual void flush() = 0;
    // After close_after_flush(): whether a flush is due even with nothing queued (a TLS
    // close_notify, or the alert of a failed handshake).
    virtual bool flush_due_on_close() const { return false; }
    // About 4 times a second, before the session's tick. May close the connection.
    virtual void on_tick(std::uint64_t /*now_ms*/) {}
    virtual bool is_tls() const { return false; }
};

// Plaintext: bytes go to the session as read and to the socket as queued.
class PlainIo final : public ConnectionIo {
public:
    explicit PlainIo(Connection& conn) : conn_(conn) {}

    void on_read(const char* data, std::size_t len) override;
    void flush() override;

private:
    Connection& conn_;
};

}  // namespace herald::transports
