"""End-to-end tier: the functions as `make build` built them, under the Lambda emulator.

The emulator fixtures (`built`, `start_function`) live in tests/conftest.py: the fault tests use them too.
"""
