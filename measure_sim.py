"""The original study's entry point: `fashion neighbors` under its old name (options: fashion/options.py, parser: fashion/cli/neighbors.py)."""

from fashion.cli import measure_sim_main

if __name__ == "__main__":  # importing it (pytest --doctest-modules) must not run it
    raise SystemExit(measure_sim_main())
