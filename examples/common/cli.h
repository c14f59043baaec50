// Command-line parsing shared by the example programs (Boost.Program_options).
#pragma once

#include <boost/program_options.hpp>

#include <optional>

namespace ioasid::examples {

// Parses argv into `values`. Every options description must contain "help".
// Returns an exit code when the program should stop now: 0 after printing the help,
// 2 after printing a usage error. nullopt means: go on.
std::optional<int> parse_command_line(
    int argc, char** argv, const char* program,
    const boost::program_options::options_description& visible,
    boost::program_options::variables_map& values,
    const boost::program_options::options_description* hidden = nullptr,
    const boost::program_options::positional_options_description* positional = nullptr);

}  // namespace ioasid::examples
