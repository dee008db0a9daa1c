"""Deterministic PCM WAV files, one short melody per track in three qualities.

Each track gets a one-second bar of four sine notes picked by a generator
seeded with its video id. The bar is rendered once per quality with
``math.sin`` and repeated with bytes multiplication up to the track's
duration, so even the largest file renders in milliseconds.
"""

from __future__ import annotations

import functools
import io
import math
import random
import sys
import wave
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._catalog import Track, require_track


@dataclass(frozen=True)
class AudioFormat:
    """PCM layout of one quality: sample rate in Hz, bytes per sample, channels."""

    sample_rate: int
    sample_width: int
    channels: int

    @property
    def bitrate_bps(self) -> int:
        """Bit rate of the PCM data in bits per second."""
        return self.sample_rate * self.sample_width * 8 * self.channels

    @property
    def label(self) -> str:
        """Bit rate label such as ``64kbps``, as yt-dlp parses it into ``tbr``."""
        # NOTE: yt-dlp reads only whole kbps from a label, so the high
        # quality's 705.6 kbit/s is labelled 706kbps.
        return f"{round(self.bitrate_bps / 1000)}kbps"


AUDIO_FORMATS: Mapping[str, AudioFormat] = MappingProxyType(
    {
        "low": AudioFormat(sample_rate=8000, sample_width=1, channels=1),
        "medium": AudioFormat(sample_rate=8000, sample_width=2, channels=1),
        "high": AudioFormat(sample_rate=22050, sample_width=2, channels=2),
    }
)

QUALITIES: tuple[str, ...] = tuple(AUDIO_FORMATS)

# A minor pentatonic from A3 to E5, in Hz.
_SCALE_HZ = (220.0, 261.63, 293.66, 329.63, 392.0, 440.0, 523.25, 587.33, 659.25)
_NOTES_PER_BAR = 4
_AMPLITUDE = 0.5
_FADE_S = 0.01


def require_format(quality: str) -> AudioFormat:
    """Return the AudioFormat of a quality name or raise ValueError."""
    audio_format = AUDIO_FORMATS.get(quality)
    if audio_format is None:
        raise ValueError(f"quality {quality!r} is not one of {QUALITIES}")
    return audio_format


def audio_bytes(video_id: str, quality: str) -> bytes:
    """Return the WAV file of a catalog track in a quality, rendering it once."""
    require_format(quality)
    return render_wav(require_track(video_id), quality)


@functools.cache
def render_wav(track: Track, quality: str) -> bytes:
    """Render the track's melody as a complete WAV file in this quality."""
    audio_format = AUDIO_FORMATS[quality]
    bar = _encode_bar(_melody(track.video_id), audio_format)
    return _wrap_wav(bar * track.duration_s, audio_format)


def _melody(video_id: str) -> list[float]:
    # random.Random seeded with a str hashes it with SHA-512, so the melody
    # does not depend on PYTHONHASHSEED.
    generator = random.Random(video_id)
    return [generator.choice(_SCALE_HZ) for _ in range(_NOTES_PER_BAR)]


def _encode_bar(melody: list[float], audio_format: AudioFormat) -> bytes:
    samples = _bar_samples(melody, audio_format.sample_rate)
    interleaved = [value for value in samples for _ in range(audio_format.channels)]
    if audio_format.sample_width == 1:
        return _encode_unsigned_8bit(interleaved)
    return _encode_signed_16bit(interleaved)


def _bar_samples(melody: list[float], sample_rate: int) -> list[float]:
    # Note boundaries use integer division so that one bar is exactly one
    # second of frames even when the rate is not divisible by the note count.
    count = len(melody)
    bounds = [index * sample_rate // count for index in range(count + 1)]
    samples: list[float] = []
    for index, frequency in enumerate(melody):
        length = bounds[index + 1] - bounds[index]
        samples.extend(_note_samples(frequency, length, sample_rate))
    return samples


def _note_samples(frequency: float, length: int, sample_rate: int) -> list[float]:
    step = 2 * math.pi * frequency / sample_rate
    fade = max(1, int(sample_rate * _FADE_S))
    return [
        _AMPLITUDE * _envelope(index, length, fade) * math.sin(step * index)
        for index in range(length)
    ]


def _envelope(index: int, length: int, fade: int) -> float:
    # A linear fade in and out keeps note boundaries free of clicks.
    return min(1.0, index / fade, (length - 1 - index) / fade)


def _encode_unsigned_8bit(samples: list[float]) -> bytes:
    # 8-bit WAV samples are unsigned with silence at 128.
    return bytes(128 + round(127 * value) for value in samples)


def _encode_signed_16bit(samples: list[float]) -> bytes:
    pcm = array("h", (round(32767 * value) for value in samples))
    if sys.byteorder == "big":
        pcm.byteswap()
    return pcm.tobytes()


def _wrap_wav(pcm: bytes, audio_format: AudioFormat) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(audio_format.channels)
        writer.setsampwidth(audio_format.sample_width)
        writer.setframerate(audio_format.sample_rate)
        writer.writeframes(pcm)
    return buffer.getvalue()
