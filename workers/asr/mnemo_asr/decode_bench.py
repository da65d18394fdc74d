"""The ASR benchmark's baseline: decode audio files in one process, without mnemo or NATS.

``python -m mnemo_asr.decode_bench CONTENT_TYPE FILE [FILE...]`` decodes each file the way
the worker does (``to_pcm16k`` then the recogniser) and prints one JSON line:
``{"audio_s": ..., "wall_s": ..., "cpu_s": ..., "files": n}``.
"""

import json
import sys
import time

from .audio import to_pcm16k
from .recognizer import Recognizer


def main():
    content_type, files = sys.argv[1], sys.argv[2:]
    r = Recognizer()
    audio = 0.0
    wall, cpu = time.perf_counter(), time.process_time()
    for f in files:
        with open(f, "rb") as fh:
            pcm = to_pcm16k(content_type, fh.read())
        audio += len(pcm) / 32000
        r.transcribe(pcm)
    print(
        json.dumps(
            {
                "audio_s": audio,
                "wall_s": time.perf_counter() - wall,
                "cpu_s": time.process_time() - cpu,
                "files": len(files),
            }
        )
    )


if __name__ == "__main__":
    main()
