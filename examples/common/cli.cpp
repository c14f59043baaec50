// SPDX-License-Identifier: MIT
#include "cli.h"

#include "base/usage_error.h"

#include <iostream>

namespace po = boost::program_options;

namespace ioasid::examples {

std::optional<int> parse_command_line(int argc, char** argv, const char* program,
                                      po::options_description& visible,
                                      po::variables_map& values,
                                      const po::options_description* hidden,
                                      const po::positional_options_description* positional,
                                      const HelpPrinter& print_help) {
  visible.add_options()("version", "print the version and exit");
  po::options_description all;
  all.add(visible);
  if (hidden) all.add(*hidden);
  try {
    po::command_line_parser parser(argc, argv);
    parser.options(all);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), values);
    if (values.count("help")) {
      if (print_help)
        print_help(values);
      else
        std::cout << visible << "\n";
      return 0;
    }
    if (values.count("version")) {
      std::cout << program << " " << IOASID_VERSION << "\n";
      return 0;
    }
    po::notify(values);
  } catch (const po::error& e) {
    print_usage_error(std::cerr, program, usage_error_text(e));
    return 2;
  }
  return std::nullopt;
}

}  // namespace ioasid::examples
