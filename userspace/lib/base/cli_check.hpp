// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file cli_check.hpp
 * A CLI11 check from a parser that throws, for the tools' options: the
 * value is valid if the parser returns, and the exception's message is
 * CLI11's error ("--size: <what>") if it throws.  Header-only: only the
 * tools that link CLI11 include it.
 */
#pragma once

#include <exception>
#include <string>

#include <CLI/CLI.hpp>

namespace vpci {

/** A CLI::Validator named @p what that runs @p parse on each value. */
template <typename F> CLI::Validator checked_by(F parse, const char *what)
{
	return CLI::Validator(
		[parse](std::string &v) -> std::string {
			try {
				(void)parse(v);
				return {};
			} catch (const std::exception &e) {
				return e.what();
			}
		},
		what);
}

} // namespace vpci
