"""The byte formats a worker signs (docs/FORMAT.md §2, §6 and §15.2).

Integers are big-endian and fixed width; ``str`` is ``u32 length || UTF-8``; ``list<T>``
is ``u32 count || T...``; ``opt<T>`` is ``0x00`` or ``0x01 || T``.
"""

import struct

import blake3

CTX_PAYLOAD = "mnemo 2026-11-26 payload commitment v1"
SIG_DERIVED = b"mnemo derived signature v1" + b"\x00" * 6


def u32(n: int) -> bytes:
    return struct.pack(">I", n)


def i64(n: int) -> bytes:
    return struct.pack(">q", n)


def string(s: str) -> bytes:
    b = s.encode("utf-8")
    return u32(len(b)) + b


def opt(value, encode) -> bytes:
    return b"\x00" if value is None else b"\x01" + encode(value)


def memory_record(kind, tags, captured_at, source, content_type, content: bytes) -> bytes:
    """The canonical memory record of an inline memory (FORMAT.md §6.1)."""
    return (
        b"\x01"
        + string(kind)
        + u32(len(tags))
        + b"".join(string(t) for t in tags)
        + opt(captured_at, i64)
        + opt(source, string)
        + string(content_type)
        + b"\x01"
        + u32(len(content))
        + content
    )


def commitment(salt: bytes, record: bytes) -> bytes:
    """The payload commitment (FORMAT.md §6): BLAKE3 derive_key over salt || record."""
    return blake3.blake3(salt + record, derive_key_context=CTX_PAYLOAD).digest()


def derived_message(user, grant: bytes, processor, version, inputs, commit: bytes) -> bytes:
    """What the processor signs for a derived memory (FORMAT.md §15.2)."""
    ordered = sorted(set(inputs))
    return (
        SIG_DERIVED
        + string(user)
        + grant
        + string(processor)
        + string(version)
        + u32(len(ordered))
        + b"".join(ordered)
        + commit
    )
