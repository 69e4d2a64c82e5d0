"""Janus-Pro over transformers' ``JanusForConditionalGeneration``, T2I-R1's generator (t2i_r1.md §3–5, §11).

``layout`` (token ids and raster geometry), ``checkpoint`` / ``keymap`` (strict loading of the HF and the original
DeepSeek layouts), ``prompting`` (chat templates, padding, CFG rows), ``pipeline`` (the image sampling loop with
steps of K raster rows), ``logprob`` (teacher-forced log-probabilities), ``text`` / ``cot`` (semantic-level CoT),
``tiny`` (tiny random models for tests). This package imports no other project package.
"""
