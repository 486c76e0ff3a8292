"""The `dfm` commands, one module each: `add_parser(sub)` declares the command's arguments, `run(args)` carries
it out and returns its exit code. app/cli.py lists them in help order and dispatches.

This file imports nothing: a module that needs one command (`dfm demo` renders through `render`) imports it
without pulling in the others.
"""
