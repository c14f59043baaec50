// SPDX-License-Identifier: MIT
// Command-line parsing shared by the example programs (Boost.Program_options).
#pragma once

#include <boost/program_options.hpp>

#include <functional>
#include <optional>

namespace ioasid::examples {

// Prints the help for --help; it sees the parsed values (a command named beside
// --help, say). Without one, --help prints `visible`.
using HelpPrinter = std::function<void(const boost::program_options::variables_map& values)>;

// Parses argv into `values`. Every options description must contain "help"; --version
// is added to `visible` here, so every program has it and prints "PROGRAM VERSION".
// Returns an exit code when the program should stop now: 0 after printing the help or
// the version, 2 after printing a usage error ("PROGRAM: WHAT" and where the help is,
// as ioasidd's). nullopt means: go on.
std::optional<int> parse_command_line(
    int argc, char** argv, const char* program,
    boost::program_options::options_description& visible,
    boost::program_options::variables_map& values,
    const boost::program_options::options_description* hidden = nullptr,
    const boost::program_options::positional_options_description* positional = nullptr,
    const HelpPrinter& print_help = nullptr);

}  // namespace ioasid::examples
