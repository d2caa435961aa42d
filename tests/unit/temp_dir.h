// TempDir: a fresh directory for one test, removed with everything in it at scope exit.
#pragma once

#include <cstdlib>
#include <doctest/doctest.h>
#include <filesystem>
#include <string>
#include <system_error>

namespace herald::test {

class TempDir {
public:
    explicit TempDir(const char* prefix = "herald-test") {
        std::string path =
            (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
        REQUIRE(mkdtemp(path.data()) != nullptr);
        path_ = path;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

}  // namespace herald::test
