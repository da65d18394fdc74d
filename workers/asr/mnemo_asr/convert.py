"""Re-encodes audio, for tests and demos: ``python -m mnemo_asr.convert IN OUT [RATE]``.

``OUT`` ending in ``.webm`` is Opus in WebM (what a browser's MediaRecorder makes), in
``.wav`` 16-bit PCM WAV at ``RATE`` (default 44100 Hz, so the worker must convert it).
``IN`` is anything FFmpeg reads, or raw 16 kHz PCM ending in ``.raw``.
"""

import sys

import av


def convert(src: str, dst: str, rate: int = 44100):
    if src.endswith(".raw"):
        inp = av.open(src, format="s16le", options={"sample_rate": "16000", "ch_layout": "mono"})
    else:
        inp = av.open(src)
    webm = dst.endswith(".webm")
    with inp, av.open(dst, "w", format="webm" if webm else "wav") as out:
        codec, fmt, r = ("libopus", "s16", 48000) if webm else ("pcm_s16le", "s16", rate)
        st = out.add_stream(codec, rate=r)
        st.layout = "mono"
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=r)
        frames = inp.decode(inp.streams.audio[0])
        for frame in list(frames) + [None]:
            for f in resampler.resample(frame):
                for p in st.encode(f):
                    out.mux(p)
        for p in st.encode(None):
            out.mux(p)


if __name__ == "__main__":
    convert(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 44100)
