// Server: the process — history store, event log, one Worker per thread, signals, shutdown.
#pragma once

#include "broker/config.h"
#include "broker/local_event_log.h"
#include "broker/loop_context.h"
#include "broker/metrics.h"
#include "proto/result.h"
#include "server/worker.h"
#include "storage/history_store.h"
#include "transports/tls.h"

#include <atomic>
#include <memory>
#include <vector>

namespace herald::server {

// Main thread only. start() once, then run() until SIGTERM/SIGINT.
class Server {
public:
    explicit Server(broker::Config config);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Opens the history, binds the listening sockets and starts every thread. Prints the
    // "listening on" line when ready.
    proto::Status start();
    // Blocks until SIGTERM or SIGINT, then stops gracefully: new connections are refused,
    // open streams end cleanly, queued publishes are committed, the history is flushed.
    // SIGHUP meanwhile reloads the TLS certificate and key.
    void run();

private:
    // One socket per loop on host:port; port 0 becomes the port the kernel chose.
    proto::Status bind_sockets(const std::string& host, std::uint16_t& port, std::vector<int>& fds);
    void stop();

    broker::Config config_;
    std::unique_ptr<storage::HistoryStore> store_;
    broker::StorageMetrics storage_metrics_;
    std::unique_ptr<broker::LocalEventLog> event_log_;
    std::unique_ptr<transports::TlsContext> tls_;  // with --tls-listen; outlives the workers
    broker::Shared shared_;
    std::atomic<std::size_t> open_connections_{0};
    std::vector<std::unique_ptr<Worker>> workers_;
    bool started_ = false;
};

}  // namespace herald::server
