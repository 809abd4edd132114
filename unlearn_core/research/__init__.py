"""The research harness: the embedded toy world, evaluation, attacks, benchmarks and the demo.

Nothing in the product core (`unlearn_core` outside this package) imports from here; the
direction is enforced by `tests/test_package.py`. Research code uses the core's public API.
"""
