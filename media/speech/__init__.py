"""Speech to text for abuse detection: segmentation (Silero VAD) and transcription (Whisper).

Modules: :mod:`.engine` (the ``Transcriber`` protocol and ``Transcript``), :mod:`.audio` (decoding
files, 8 -> 16 kHz), :mod:`.vad` (utterance segmentation), :mod:`.model` (assembling the Whisper
weights from the installed packages), :mod:`.whisper` (the embedded engine), :mod:`.external` (an
OpenAI-compatible server, with fallback), :mod:`.files` (whole files), :mod:`.cli` (``transcribe``).

Nothing here imports from ``b2bua``; the heavy libraries (faster-whisper, CTranslate2, onnxruntime,
PyAV) are imported by the modules that need them, so importing this package is cheap.
"""
