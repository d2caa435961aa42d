// Crash tests: run one test case of this test binary in a child process that kills itself with
// SIGKILL, without closing anything, so RocksDB's memtable with every unlogged write in it is
// lost as in a real crash. The child is this binary started afresh, not a plain fork(): a fork
// would inherit RocksDB's global background threads as copies that do not run (and any lock
// they held), so the child could hang.
#pragma once

#include <csignal>
#include <doctest/doctest.h>
#include <filesystem>
#include <spawn.h>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

namespace herald::test {

// Runs the test case named `test_case` (declared with `* doctest::skip()`, so that it runs only
// when asked for) in a child with `env` added to this process's environment, and waits until
// it has been killed by SIGKILL.
inline void crash_child(const char* test_case,
                        const std::vector<std::pair<std::string, std::string>>& env) {
    std::error_code ec;
    const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    REQUIRE_MESSAGE(!ec, ec.message());
    std::vector<std::string> args{self, std::string("--test-case=") + test_case, "--no-skip",
                                  "--no-intro", "--no-version"};
    std::vector<std::string> vars;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string_view var(*e);
        bool replaced = false;
        for (const auto& [name, value] : env) {
            replaced = replaced || var.starts_with(name + "=");
        }
        if (!replaced) {
            vars.emplace_back(var);
        }
    }
    for (const auto& [name, value] : env) {
        vars.push_back(name + "=" + value);
    }
    std::vector<char*> argv;
    for (std::string& a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (std::string& v : vars) {
        envp.push_back(v.data());
    }
    envp.push_back(nullptr);

    pid_t pid = 0;
    int rc = posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv.data(), envp.data());
    REQUIRE_MESSAGE(rc == 0, "posix_spawn: ", rc);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    // Any other end means the child failed before it got to the crash (its output says why).
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
}

}  // namespace herald::test
