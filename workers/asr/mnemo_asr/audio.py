"""Audio in, 16 kHz mono 16-bit PCM out (what the recogniser takes).

Accepted: WAV (any rate, channels and PCM width), raw 16-bit little-endian PCM
(``audio/l16``, ``audio/pcm``, ``audio/x-raw``; ``rate=`` and ``channels=`` parameters,
default 16000 and 1), and whatever FFmpeg decodes, which covers what browsers record
(MediaRecorder's ``audio/webm;codecs=opus``, ``audio/ogg``), MP3 and FLAC. Decoding and
rate conversion are PyAV's (FFmpeg's libraries, shipped in its wheel).
"""

import io

import av

RATE = 16000
RAW_TYPES = ("audio/l16", "audio/pcm", "audio/x-raw", "audio/raw")


class AudioError(Exception):
    """The content is not audio this worker can decode."""


def _params(content_type: str):
    parts = [p.strip() for p in content_type.split(";")]
    params = {}
    for p in parts[1:]:
        if "=" in p:
            k, v = p.split("=", 1)
            params[k.strip().lower()] = v.strip()
    return parts[0].lower(), params


def _resample(container) -> bytes:
    streams = [s for s in container.streams if s.type == "audio"]
    if not streams:
        raise AudioError("no audio stream")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = bytearray()
    for frame in container.decode(streams[0]):
        for f in resampler.resample(frame):
            out += bytes(f.planes[0])[: f.samples * 2]
    for f in resampler.resample(None):
        out += bytes(f.planes[0])[: f.samples * 2]
    return bytes(out)


def to_pcm16k(content_type: str, data: bytes) -> bytes:
    """Decodes `data` (of MIME type `content_type`) to 16 kHz mono s16le PCM."""
    mime, params = _params(content_type)
    if not data:
        raise AudioError("empty audio")
    try:
        if mime in RAW_TYPES:
            rate = int(params.get("rate", RATE))
            channels = int(params.get("channels", 1))
            if rate == RATE and channels == 1:
                return data[: len(data) // 2 * 2]
            container = av.open(
                io.BytesIO(data),
                format="s16le",
                options={"sample_rate": str(rate), "ch_layout": "mono" if channels == 1 else "stereo"},
            )
        else:
            container = av.open(io.BytesIO(data))
        with container:
            pcm = _resample(container)
    except AudioError:
        raise
    except (av.FFmpegError, ValueError, OSError) as e:
        raise AudioError(f"cannot decode {mime}: {e}") from e
    if not pcm:
        raise AudioError(f"no samples in {mime}")
    return pcm
