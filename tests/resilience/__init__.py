"""Tests of services.chassis.resilience: state machines on a manual clock, no I/O."""
