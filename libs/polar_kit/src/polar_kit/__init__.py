"""What every Polar service shares at run time.

Import from the submodules (`polar_kit.grpc`, `polar_kit.outbox`, ...); this package imports
nothing itself so `python -m polar_kit.parked` stays cheap and warning-free.
"""
