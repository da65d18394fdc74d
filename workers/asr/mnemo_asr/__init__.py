"""mnemo-asr: a speech-to-text worker for mnemo, written from docs/WORKERS.md alone.

It takes the tasks of a processor (by default ``asr``), fetches each audio memory,
recognises its speech offline with PocketSphinx's US English model, and records the text
as a ``transcript`` memory derived from the audio, signed with the processor's key.
"""
