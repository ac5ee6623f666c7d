"""The shared memory vocabulary: state, reads, writes, learned slots (DESIGN.md)."""
