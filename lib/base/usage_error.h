// SPDX-License-Identifier: MIT
// One wording for command-line errors, shared by ioasidd and the example programs:
// "PROGRAM: --OPTION: what is wrong", then where the help is. Boost.Program_options'
// own errors are reworded to match. Header-only: only programs parsing a command line
// include it (and link Boost.Program_options).
#pragma once

#include <boost/program_options/errors.hpp>

#include <ostream>
#include <string>

namespace ioasid {

// "--OPTION: what is wrong" for Boost's errors; its own text for the rare others.
inline std::string usage_error_text(const boost::program_options::error& error) {
  namespace po = boost::program_options;
  if (dynamic_cast<const po::too_many_positional_options_error*>(&error)) return "takes no arguments";
  const auto* named = dynamic_cast<const po::error_with_option_name*>(&error);
  const std::string option = named ? named->get_option_name() : "";
  if (option.empty()) return error.what();
  if (dynamic_cast<const po::unknown_option*>(&error)) return option + ": unknown option";
  if (dynamic_cast<const po::multiple_occurrences*>(&error)) return option + ": given more than once";
  if (dynamic_cast<const po::invalid_option_value*>(&error)) {
    // Boost keeps the value to itself but for its message: "the argument ('abc') for ...".
    const std::string text = error.what();
    const size_t from = text.find("('"), to = text.find("')");
    return option + ": invalid value" +
           (from < to && to != std::string::npos ? ", got '" + text.substr(from + 2, to - from - 2) + "'" : "");
  }
  if (const auto* syntax = dynamic_cast<const po::invalid_command_line_syntax*>(&error)) {
    if (syntax->kind() == po::invalid_syntax::missing_parameter ||
        syntax->kind() == po::invalid_syntax::empty_adjacent_parameter)
      return option + ": needs a value";
    if (syntax->kind() == po::invalid_syntax::extra_parameter) return option + ": takes no value";
  }
  return error.what();
}

inline void print_usage_error(std::ostream& out, const char* program, const std::string& what) {
  out << program << ": " << what << "\nTry '" << program << " --help'.\n";
}

}  // namespace ioasid
