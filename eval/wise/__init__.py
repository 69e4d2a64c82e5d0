"""WISE evaluation harness: prompts, rubric, pluggable judge, WiScore."""
