"""Abuse detection on text: a lexicon, a character n-gram model, and their combined score.

Modules: :mod:`.normalize` (jamo, spacing, repeats), :mod:`.lexicon` (the YAML word list),
:mod:`.corpora` (the shipped training data), :mod:`.textmodel` (training, cache), :mod:`.classifier`
(the combined verdict), :mod:`.evaluation` (held-out figures), :mod:`.cli` (``abuse classify``).
Sans-I/O apart from reading its files: no asyncio, nothing of call control or media (it runs in
detection worker processes).
"""
