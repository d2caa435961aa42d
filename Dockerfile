# Herald on Debian 12. Build:  docker build -t herald .
# Run:    docker run -d -p 8080:8080 -v herald-data:/data --ulimit nofile=65536:65536 herald
# Extra arguments are appended to the herald command line (later flags win):
#         docker run ... herald --history 5000 --durability write

# --- build stage: the same dependency script as the README's quick start -------------------
FROM debian:bookworm-slim AS build
WORKDIR /src
# The script alone first, so the package layer is reused when only the sources change.
COPY tools/install-deps.sh tools/install-deps.sh
RUN bash tools/install-deps.sh
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build build --target herald herald-cli -j"$(nproc)"

# --- runtime stage: only the shared libraries the binaries link --------------------------------
FROM debian:bookworm-slim
# Exactly what `ldd herald herald-cli` lists. RocksDB is linked statically (the RocksDB::rocksdb
# target of Debian's CMake package is librocksdb.a), so it needs its compression libraries
# rather than librocksdb7.8. libuv1: the event loops; libssl3, libnghttp2-14, libwslay1: TLS,
# HTTP/2 and WebSocket framing; curl: the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libstdc++6 libuv1 libsnappy1v5 liblz4-1 libzstd1 libbz2-1.0 zlib1g \
      libssl3 libnghttp2-14 libwslay1 curl \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin herald \
 && mkdir /data && chown herald:herald /data
COPY --from=build /src/build/herald /src/build/herald-cli /usr/local/bin/
# Fail the build, not the first start, if a shared library is missing.
RUN ! ldd /usr/local/bin/herald /usr/local/bin/herald-cli | grep 'not found'

USER herald
VOLUME /data
EXPOSE 8080
# Herald stops gracefully on SIGTERM: streams end cleanly, held polls are answered, the history
# is flushed; it exits within a few seconds.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["herald", "--listen", "0.0.0.0:8080", "--data", "/data"]
