// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file sim_cli.hpp
 * vpci-sim's command line: the options (CLI11) and their checks, apart
 * from main() so that the unit tests parse what the tool parses.
 */
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "sim_run.hpp"

namespace vpci::sim {

/** What the command line sets. */
struct cli_options {
	run_config run;
	std::string policy = "identity", dir = "both", mode = "poll", sizes = "60", json_out,
		    rx_perm = "rw";
	bool no_iommu = false, quiet = false, verbose = false;
	unsigned ring = 256;
	unsigned watchdog_s = 0;
};

/** Add vpci-sim's options to @p app, bound to @p o. */
void add_cli_options(CLI::App &app, cli_options &o);

/**
 * After parsing (which checked each option alone, and prints
 * --list-faults): check what relates several options (--size against
 * --gso, the chains against --ring-size, --fault-pair against
 * --queue-pairs, the RAM against the rings) and fill o.run.  Throws
 * CLI::ValidationError naming the option.
 */
void finish_cli_options(cli_options &o);

} // namespace vpci::sim
