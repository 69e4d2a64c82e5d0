"""T2I-CompBench(++) evaluation harness: official layout and scoring rules, models through transformers / open_clip."""
