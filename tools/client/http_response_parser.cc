#include "tools/client/http_response_parser.h"

#include <cctype>

namespace herald::client {

namespace {

ResponseParser& self(llhttp_t* p) {
    return *static_cast<ResponseParser*>(p->data);
}

int tr_message_begin(llhttp_t* p) {
    return self(p).on_message_begin();
}
int tr_status(llhttp_t* p, const char* at, std::size_t n) {
    return self(p).on_status({at, n});
}
int tr_header_field(llhttp_t* p, const char* at, std::size_t n) {
    return self(p).on_header_field({at, n});
}
int tr_header_value(llhttp_t* p, const char* at, std::size_t n) {
    return self(p).on_header_value({at, n});
}
int tr_header_value_complete(llhttp_t* p) {
    return self(p).on_header_value_complete();
}
int tr_headers_complete(llhttp_t* p) {
    return self(p).on_headers_complete();
}
int tr_body(llhttp_t* p, const char* at, std::size_t n) {
    return self(p).on_body({at, n});
}
int tr_message_complete(llhttp_t* p) {
    return self(p).on_message_complete();
}

// llhttp keeps a pointer to its settings for the parser's whole life.
const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
        llhttp_settings_t init;
        llhttp_settings_init(&init);
        init.on_message_begin = tr_message_begin;
        init.on_status = tr_status;
        init.on_header_field = tr_header_field;
        init.on_header_value = tr_header_value;
        init.on_header_value_complete = tr_header_value_complete;
        init.on_headers_complete = tr_headers_complete;
        init.on_body = tr_body;
        init.on_message_complete = tr_message_complete;
        return init;
    }();
    return s;
}

proto::Error parse_error(const llhttp_t& parser, llhttp_errno_t err) {
    const char* reason = llhttp_get_error_reason(&parser);
    return proto::make_error(proto::ErrorCode::kInternal,
                             std::string("malformed HTTP response: ") + llhttp_errno_name(err) +
                                 (reason != nullptr ? std::string(" (") + reason + ")" : ""));
}

}  // namespace

ResponseParser::ResponseParser(BodySink sink, bool head_request)
    : sink_(std::move(sink)), head_request_(head_request) {
    llhttp_init(&parser_, HTTP_RESPONSE, &settings());
    parser_.data = this;
}

proto::Status ResponseParser::feed(std::string_view bytes) {
    if (done() || bytes.empty()) {
        return proto::ok_status();
    }
    started_ = true;
    const llhttp_errno_t err = llhttp_execute(&parser_, bytes.data(), bytes.size());
    switch (err) {
    case HPE_OK:
        return proto::ok_status();
    case HPE_PAUSED:
        // on_message_complete pauses so that bytes after the response are not parsed as the
        // start of another one; a server that sends any has desynchronised the connection.
        extra_bytes_ = llhttp_get_error_pos(&parser_) != bytes.data() + bytes.size();
        return proto::ok_status();
    case HPE_USER:
        if (stopped_) {
            return proto::ok_status();
        }
        [[fallthrough]];
    default:
        return parse_error(parser_, err);
    }
}

proto::Status ResponseParser::finish() {
    if (done()) {
        return proto::ok_status();
    }
    if (!started_) {
        return proto::make_error(proto::ErrorCode::kUnavailable,
                                 "connection closed before any response");
    }
    const llhttp_errno_t err = llhttp_finish(&parser_);
    if (err != HPE_OK && err != HPE_PAUSED && err != HPE_INVALID_EOF_STATE) {
        return parse_error(parser_, err);
    }
    if (!complete_) {
        // A cut-off response is the network's (or the broker's crash's) doing, not bad HTTP.
        return proto::make_error(proto::ErrorCode::kUnavailable,
                                 "connection closed in the middle of the response");
    }
    return proto::ok_status();
}

int ResponseParser::on_message_begin() {
    response_ = Response{};
    field_.clear();
    value_.clear();
    return 0;
}

int ResponseParser::on_status(std::string_view piece) {
    response_.reason.append(piece);
    return 0;
}

int ResponseParser::on_header_field(std::string_view piece) {
    field_.append(piece);
    return 0;
}

int ResponseParser::on_header_value(std::string_view piece) {
    value_.append(piece);
    return 0;
}

int ResponseParser::on_header_value_complete() {
    for (char& c : field_) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    response_.headers.push_back(Header{std::move(field_), std::move(value_)});
    field_.clear();
    value_.clear();
    return 0;
}

int ResponseParser::on_headers_complete() {
    response_.status = llhttp_get_status_code(&parser_);
    stream_body_ = sink_ && response_.status >= 200 && response_.status < 300;
    return head_request_ ? 1 : 0;  // 1: this response has no body
}

int ResponseParser::on_body(std::string_view piece) {
    if (!stream_body_) {
        response_.body.append(piece);
        return 0;
    }
    if (!sink_(response_, piece)) {
        stopped_ = true;
        return HPE_USER;  // makes llhttp_execute return at once
    }
    return 0;
}

int ResponseParser::on_message_complete() {
    if (response_.status >= 100 && response_.status < 200 && response_.status != 101) {
        return 0;  // interim response (100 Continue, 103 Early Hints): the real one follows
    }
    keep_alive_ = llhttp_should_keep_alive(&parser_) != 0;
    complete_ = true;
    return HPE_PAUSED;
}

}  // namespace herald::client
