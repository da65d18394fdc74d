"""Offline speech recognition: PocketSphinx 5 with the US English model its wheel ships."""

import threading

from pocketsphinx import Decoder

from .audio import RATE

ENGINE = "pocketsphinx 5.1.1 en-us"


class Recognizer:
    """One decoder; `transcribe` is safe to call from one thread at a time."""

    def __init__(self):
        self._decoder = Decoder(samprate=RATE, loglevel="FATAL")
        self._lock = threading.Lock()

    def transcribe(self, pcm: bytes) -> str:
        """The words heard in 16 kHz mono s16le `pcm`, lowercase, space-separated."""
        with self._lock:
            d = self._decoder
            d.start_utt()
            d.process_raw(pcm, no_search=False, full_utt=True)
            d.end_utt()
            hyp = d.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""
