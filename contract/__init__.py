"""The wire contract between the edge and the aggregator (DESIGN.md): standard library only."""
