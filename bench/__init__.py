"""Benchmarks: what Consentry's protection costs, measured against a plain baseline.

Run ``python -m bench --help``. This package is not part of the test suite (pytest only
collects ``tests/``): it starts real servers, drives them with ``wrk`` and writes
``bench/results/latest.json`` and ``bench/results/RESULTS.md``.

The baseline (:mod:`bench.baseline`) is the same Litestar + Piccolo stack with the same
columns, queries and session check, but with no policy, no field encryption and no audit,
so the ratio Consentry/baseline is the price of those three and nothing else.
"""
