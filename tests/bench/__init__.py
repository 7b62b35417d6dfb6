"""The benchmarks in bench/ still run: as modules from the repository root, as ``make bench`` runs them."""
