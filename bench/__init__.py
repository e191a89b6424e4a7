"""Benchmarks (not tests): `make bench`. Figures are ratios against a baseline measured in the
same run, because these machines are noisy."""
