#include "transports/connection_io.h"

#include "transports/connection.h"

namespace herald::transports {

void PlainIo::on_read(const char* data, std::size_t len) {
    conn_.deliver(data, len);
}

void PlainIo::flush() {
    conn_.writer_.send(conn_.queue_);
}

}  // namespace herald::transports
