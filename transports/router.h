// The HTTP API (docs/api.md): routes a request to publish, subscribe, health and metrics
// handlers. Protocol-neutral: HTTP/1.1 and HTTP/2 adapters both call handle_request.
#pragma once

#include "broker/loop_context.h"
#include "proto/result.h"
#include "transports/http_message.h"

#include <memory>
#include <string>

namespace herald::transports {

// Handles `req`, answering on `sink`. Returns the exchange when the response goes on after
// this call (the caller owns it); nullptr when the response is already complete.
std::unique_ptr<Exchange> handle_request(broker::LoopContext& ctx, HttpRequest& req,
                                         ResponseSink& sink);

// The HTTP status of a refusal or failure: 400, 404, 413, 500 or 503.
int http_status(proto::ErrorCode code);

// A complete JSON response.
void send_json(ResponseSink& sink, int status, const std::string& body, HeaderList headers);
// A complete {"error": message} response.
void send_error(ResponseSink& sink, int status, const std::string& message, HeaderList headers);

const char* reason_phrase(int status);

}  // namespace herald::transports
