"""Shared code of the cd4ml-kkbox pipeline: I/O at the edges, pure functions inside."""
