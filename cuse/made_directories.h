// SPDX-License-Identifier: MIT
// Directories the daemon creates for its mount and its admin socket, removed again
// (if empty) when it stops or fails to start: a daemon leaves no directory it made.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <system_error>
#include <vector>

namespace ioasid::daemon {

class MadeDirectories {
 public:
  MadeDirectories() = default;
  MadeDirectories(const MadeDirectories&) = delete;
  MadeDirectories& operator=(const MadeDirectories&) = delete;
  ~MadeDirectories() {
    for (const auto& dir : made_) ::rmdir(dir.c_str());  // deepest first; fails if not empty, as it should
  }

  // Creates `dir` and its missing parents, remembering the ones made.
  std::error_code create(const std::filesystem::path& dir) {
    std::error_code error;
    auto path = std::filesystem::absolute(dir, error).lexically_normal();
    if (path.filename().empty()) path = path.parent_path();  // "a/b/" names a/b
    std::vector<std::filesystem::path> missing;  // deepest first
    for (; !error && path.has_relative_path() && !std::filesystem::exists(path, error); path = path.parent_path())
      missing.push_back(path);
    if (error) return error;
    std::filesystem::create_directories(dir, error);
    // Those made before a failure too: removing one never made fails harmlessly.
    made_.insert(made_.end(), missing.begin(), missing.end());
    return error;
  }

 private:
  std::vector<std::filesystem::path> made_;
};

}  // namespace ioasid::daemon
