"""The `video-analysis` CLI: one module per command."""
