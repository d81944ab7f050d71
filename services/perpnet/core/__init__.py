"""The pure, deterministic exchange core: no I/O, no floats, no wall clock.

Every service runs this same code: the sequencer as the authority, the margin
engine as its risk view and the prover to build its trace, so they cannot
disagree.
"""
