#include "transports/tls.h"

#include <algorithm>
#include <cstring>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace herald::transports {
namespace {

using proto::ErrorCode;
using proto::make_error;

// Our ALPN preference: h2 first (many streams on one connection), then HTTP/1.1.
constexpr unsigned char kH2[] = {'h', '2'};
constexpr unsigned char kHttp11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};

std::string openssl_error(const char* what) {
    std::string out = what;
    unsigned long e = ERR_get_error();
    if (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        out += ": ";
        out += buf;
    }
    ERR_clear_error();
    return out;
}

// True if the client's ALPN list (length-prefixed names) offers `proto`.
bool offers(const unsigned char* in, unsigned int inlen, const unsigned char* proto,
            unsigned int len) {
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen) {
            return false;
        }
        if (n == len && std::memcmp(in + i + 1, proto, len) == 0) {
            return true;
        }
        i += 1 + n;
    }
    return false;
}

// OpenSSL callback (C): picks h2 or http/1.1 from what the client offers. Without either the
// handshake goes on without ALPN and the connection speaks HTTP/1.1.
int select_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
                const unsigned char* in, unsigned int inlen, void* /*arg*/) {
    if (offers(in, inlen, kH2, sizeof kH2)) {
        *out = kH2;
        *outlen = sizeof kH2;
        return SSL_TLSEXT_ERR_OK;
    }
    if (offers(in, inlen, kHttp11, sizeof kHttp11)) {
        *out = kHttp11;
        *outlen = sizeof kHttp11;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

TlsContext::TlsContext(std::string cert_file, std::string key_file, SSL_CTX* ctx)
    : cert_file_(std::move(cert_file)), key_file_(std::move(key_file)), ctx_(ctx) {}

TlsContext::~TlsContext() {
    SSL_CTX_free(ctx_);
}

proto::Result<SSL_CTX*> TlsContext::build(const std::string& cert_file,
                                          const std::string& key_file) {
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == nullptr) {
        return make_error(ErrorCode::kInternal, openssl_error("SSL_CTX_new"));
    }
    auto fail = [&](const std::string& what) -> proto::Result<SSL_CTX*> {
        SSL_CTX_free(ctx);
        return make_error(ErrorCode::kInvalidArgument, openssl_error(what.c_str()));
    };
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    // Idle connections (most subscribers, most of the time) give their record buffers back.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    // TLS 1.2: forward secrecy and AEAD only, which is also what HTTP/2 requires
    // (RFC 9113, 9.2.2). TLS 1.3 suites are all fine as they are.
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
        return fail("cipher list");
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
        return fail("--tls-cert " + cert_file);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        return fail("--tls-key " + key_file);
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        return fail("--tls-key does not match --tls-cert");
    }
    SSL_CTX_set_alpn_select_cb(ctx, &select_alpn, nullptr);
    return ctx;
}

proto::Result<std::unique_ptr<TlsContext>> TlsContext::load(const std::string& cert_file,
                                                            const std::string& key_file) {
    auto ctx = build(cert_file, key_file);
    if (!ctx) {
        return ctx.error();
    }
    return std::unique_ptr<TlsContext>(new TlsContext(cert_file, key_file, *ctx));
}

proto::Status TlsContext::reload() {
    auto ctx = build(cert_file_, key_file_);
    if (!ctx) {
        return ctx.error();
    }
    SSL_CTX* old = nullptr;
    {
        std::lock_guard lock(mu_);
        old = ctx_;
        ctx_ = *ctx;
    }
    SSL_CTX_free(old);  // connections made with it hold their own reference
    return proto::ok_status();
}

SSL* TlsContext::new_ssl() const {
    std::lock_guard lock(mu_);
    return SSL_new(ctx_);
}

TlsChannel::TlsChannel(SSL* ssl) : ssl_(ssl) {
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    // An empty input BIO means "wait for more", not end of file.
    BIO_set_mem_eof_return(in_, -1);
    BIO_set_mem_eof_return(out_, -1);
    SSL_set_bio(ssl_, in_, out_);
    SSL_set_accept_state(ssl_);
}

TlsChannel::~TlsChannel() {
    SSL_free(ssl_);
}

void TlsChannel::feed(const char* data, std::size_t len) {
    while (len > 0) {
        int n = BIO_write(in_, data, static_cast<int>(std::min<std::size_t>(len, 1 << 30)));
        if (n <= 0) {
            return;
        }
        data += n;
        len -= static_cast<std::size_t>(n);
    }
}

namespace {

// What a failed SSL_do_handshake / SSL_read_ex call (returning `ret`) means for the caller.
TlsChannel::Status status_after(SSL* ssl, int ret) {
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return TlsChannel::Status::kWantMore;
    case SSL_ERROR_ZERO_RETURN:
        return TlsChannel::Status::kClosed;
    default:
        return TlsChannel::Status::kError;
    }
}

}  // namespace

TlsChannel::Status TlsChannel::handshake() {
    if (handshake_done_) {
        return Status::kOk;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(ssl_);
    if (r == 1) {
        handshake_done_ = true;
        return Status::kOk;
    }
    return status_after(ssl_, r);
}

std::string_view TlsChannel::alpn() const {
    const unsigned char* p = nullptr;
    unsigned int n = 0;
    SSL_get0_alpn_selected(ssl_, &p, &n);
    return p == nullptr ? std::string_view{}
                        : std::string_view(reinterpret_cast<const char*>(p), n);
}

TlsChannel::Status TlsChannel::read(char* buf, std::size_t cap, std::size_t* n) {
    *n = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl_, buf, cap, n) == 1) {
        return Status::kOk;
    }
    return status_after(ssl_, 0);
}

bool TlsChannel::write(const char* data, std::size_t len) {
    if (shut_) {
        return false;
    }
    ERR_clear_error();
    std::size_t written = 0;
    return len == 0 || (SSL_write_ex(ssl_, data, len, &written) == 1 && written == len);
}

void TlsChannel::shutdown() {
    if (shut_ || !handshake_done_) {
        return;
    }
    shut_ = true;
    ERR_clear_error();
    SSL_shutdown(ssl_);
}

std::size_t TlsChannel::output_size() const {
    return BIO_ctrl_pending(out_);
}

std::string TlsChannel::take_output() {
    std::string out(BIO_ctrl_pending(out_), '\0');
    if (!out.empty()) {
        int n = BIO_read(out_, out.data(), static_cast<int>(out.size()));
        out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    }
    return out;
}

std::string TlsChannel::last_error() const {
    unsigned long e = ERR_peek_last_error();
    if (e == 0) {
        return "handshake failed";
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

}  // namespace herald::transports
