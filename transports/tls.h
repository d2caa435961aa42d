// TLS for client connections: one server context per process (certificate, key, TLS 1.2+,
// ALPN "h2" / "http/1.1"), and per connection an OpenSSL engine over memory BIOs, so that the
// socket stays libuv's and the bytes go through the same gathered-write path as plaintext.
#pragma once

#include "proto/result.h"

#include <cstddef>
#include <memory>
#include <mutex>
#include <openssl/types.h>
#include <string>
#include <string_view>

namespace herald::transports {

// The server's TLS configuration. Created on the main thread; shared read-only by every loop.
// new_ssl() and reload() may be called from any thread. Lives until the Server is destroyed,
// after every loop ended.
class TlsContext {
public:
    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;

    // Loads the certificate chain and key (PEM). The error says what is wrong, for a human.
    static proto::Result<std::unique_ptr<TlsContext>> load(const std::string& cert_file,
                                                           const std::string& key_file);
    // Reads the files again; new connections use the new certificate, open ones keep theirs.
    // On error the old one stays in use.
    proto::Status reload();
    // A new server-side engine for one connection, or nullptr (out of memory).
    SSL* new_ssl() const;

private:
    TlsContext(std::string cert_file, std::string key_file, SSL_CTX* ctx);
    static proto::Result<SSL_CTX*> build(const std::string& cert_file, const std::string& key_file);

    const std::string cert_file_;
    const std::string key_file_;
    mutable std::mutex mu_;
    SSL_CTX* ctx_;  // guarded by mu_; each SSL holds its own reference
};

// The TLS engine of one connection: ciphertext in from the socket, plaintext out to the
// session, and back. Owned by its Connection. Loop thread only.
class TlsChannel {
public:
    explicit TlsChannel(SSL* ssl);  // takes ownership
    ~TlsChannel();
    TlsChannel(const TlsChannel&) = delete;
    TlsChannel& operator=(const TlsChannel&) = delete;

    enum class Status { kOk, kWantMore, kClosed, kError };

    // Ciphertext received from the peer.
    void feed(const char* data, std::size_t len);
    // Advances the handshake: kOk once done, kWantMore until then.
    Status handshake();
    bool handshake_done() const { return handshake_done_; }
    // The protocol ALPN selected ("h2", "http/1.1"), empty without ALPN.
    std::string_view alpn() const;
    // Decrypts into `buf`: kOk with `*n` bytes, kWantMore when nothing is buffered, kClosed
    // after the peer's close_notify.
    Status read(char* buf, std::size_t cap, std::size_t* n);
    // Encrypts plaintext; the records go to output().
    bool write(const char* data, std::size_t len);
    // Queues a close_notify alert.
    void shutdown();
    // Ciphertext waiting to be sent.
    std::size_t output_size() const;
    std::string take_output();
    // The last OpenSSL error, for a log line.
    std::string last_error() const;

private:
    SSL* ssl_;
    BIO* in_ = nullptr;   // owned by ssl_
    BIO* out_ = nullptr;  // owned by ssl_
    bool handshake_done_ = false;
    bool shut_ = false;
};

}  // namespace herald::transports
