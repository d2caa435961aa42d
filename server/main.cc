// herald: the broker executable.
#include "broker/config.h"
#include "server/server.h"

#include <cstdio>

int main(int argc, char** argv) {
    using herald::broker::config_usage;
    auto config = herald::broker::parse_config(argc, argv);
    if (!config) {
        std::fprintf(stderr, "herald: %s\n(see herald --help)\n", config.error().detail.c_str());
        return 2;
    }
    if (config->show_help) {
        std::fputs(config_usage().c_str(), stdout);
        return 0;
    }
    herald::server::Server server(std::move(config).value());
    if (auto st = server.start(); !st) {
        std::fprintf(stderr, "herald: cannot start: %s\n", st.error().detail.c_str());
        return 1;
    }
    server.run();
    return 0;
}
