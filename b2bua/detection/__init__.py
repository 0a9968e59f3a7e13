"""Abuse detection on the citizen's voice: what the detection workers report (:mod:`.events`) and what
call control does with it (:mod:`.policy`); the text classifier lives in :mod:`b2bua.abuse`, speech
recognition in :mod:`media.speech`, the audio tap and the shouting cue in :mod:`media.tap` and
:mod:`media.loudness`."""
