"""Sequential reading of a damaged MCAP file (recorder killed, file cut short, bytes overwritten).

``rosbags`` opens an MCAP file through its footer and summary, so a file without them cannot be
opened at all. :class:`McapSalvageReader` instead walks the records from the start of the file
(schemas, channels, messages, chunks) and stops cleanly at the first record it cannot read,
remembering the byte offset and the reason. Messages are deserialised with types built from the
bag's own schemas (``ros2msg`` / ``ros2idl``), falling back to the Jazzy typestore.

MCAP record layout (https://mcap.dev/spec): magic ``\\x89MCAP0\\r\\n``, then records of
``opcode (u8) | length (u64 LE) | body``. Bodies used here:
Schema 0x03 ``id u16, name str, encoding str, data bytes``;
Channel 0x04 ``id u16, schema_id u16, topic str, message_encoding str, metadata map``;
Message 0x05 ``channel_id u16, sequence u32, log_time u64, publish_time u64, data``;
Chunk 0x06 ``start u64, end u64, uncompressed_size u64, crc u32, compression str, records bytes(u64)``.
Strings are ``u32 length + utf-8``.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06
MAX_RECORD_BYTES = 1 << 31  # a longer record length is corruption, not data


class McapDamage(ValueError):
    """A record that cannot be read; ``offset`` is the byte offset of the record in the file."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"at byte {offset}: {reason}")
        self.offset = offset


@dataclass
class _Cursor:
    data: memoryview
    pos: int = 0

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or self.pos + size > len(self.data):
            raise ValueError(f"{what} needs {size} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2, "u16"))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4, "u32"))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8, "u64"))[0]

    def string(self) -> str:
        return bytes(self.take(self.u32(), "string")).decode("utf-8")


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        raw = data
    elif compression == "zstd":
        try:
            from compression import zstd  # Python 3.14+
        except ImportError:
            from backports import zstd  # type: ignore[no-redef]  # rosbags depends on it
        raw = zstd.decompress(data)
    elif compression == "lz4":
        from lz4.frame import decompress
        raw = decompress(data)
    else:
        raise ValueError(f"unsupported chunk compression {compression!r}")
    if len(raw) != size:
        raise ValueError(f"chunk decompressed to {len(raw)} bytes, expected {size}")
    return raw


@dataclass
class McapSalvageReader:
    """Read the intact prefix of an MCAP file.

    ``raw_messages()`` yields ``(topic, msgtype, log_ns, cdr_bytes)``; afterwards ``damage`` is the
    :class:`McapDamage` that stopped it, or None for an intact file. ``topics()`` scans the file once
    to count the intact messages per topic; ``typestore()`` deserialises with the file's schemas.
    McapDamage from the constructor: not an MCAP file at all.
    """

    path: Path
    schemas: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # id -> (name, encoding, data)
    channels: dict[int, tuple[str, int]] = field(default_factory=dict)  # id -> (topic, schema id)
    damage: McapDamage | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        with self.path.open("rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise McapDamage(0, f"{self.path} does not start with the MCAP magic bytes")

    def msgtype(self, channel_id: int) -> str:
        _, schema_id = self.channels[channel_id]
        return self.schemas[schema_id][0] if schema_id in self.schemas else ""

    @staticmethod
    def _chunk_records(buf: memoryview, chunk_offset: int) -> Iterator[tuple[int, memoryview, McapDamage | None]]:
        """(opcode, body, damage) of the records inside a chunk's (decompressed) data.

        A record cut off by the end of ``buf`` (a truncated chunk) is yielded once with a ``damage``
        and then raised, so the intact messages before it are kept; any other bad record raises
        :class:`McapDamage`. Offsets in messages are those of the chunk record in the file.
        """
        cur = _Cursor(buf)
        while cur.pos < len(buf):
            start = cur.pos
            where = f"inside the chunk at byte {chunk_offset} (+{start})"
            try:
                opcode = cur.take(1, "opcode")[0]
                length = cur.u64()
            except ValueError as exc:
                raise McapDamage(chunk_offset, f"truncated record {where}: {exc}") from None
            if length > MAX_RECORD_BYTES:
                raise McapDamage(chunk_offset, f"corrupt record {where}: record length {length} is implausible")
            if cur.pos + length > len(buf):
                damage = McapDamage(chunk_offset, f"truncated record 0x{opcode:02x} {where}: {length} bytes "
                                                  f"declared, {len(buf) - cur.pos} present")
                yield opcode, buf[cur.pos:], damage
                raise damage
            yield opcode, cur.take(length, "record"), None

    def raw_messages(self) -> Iterator[tuple[str, str, int, bytes]]:
        """Yield ``(topic, msgtype, log_time_ns, cdr_bytes)`` in file order up to the first damage."""
        self.damage = None
        try:
            with self.path.open("rb") as f:
                f.seek(len(MAGIC))
                for opcode, offset, body, cut in self._file_records(f):
                    if opcode == OP_CHUNK:
                        yield from self._chunk(offset, body, cut)
                    elif cut is None:
                        yield from self._handle(opcode, offset, body)
        except McapDamage as exc:
            self.damage = exc

    @staticmethod
    def _file_records(f: Any) -> Iterator[tuple[int, int, memoryview, McapDamage | None]]:
        """(opcode, offset, body, damage) of the top-level records, read one at a time from the open file
        up to the footer; a record cut off by the end of the file is yielded with a ``damage`` and then raised."""
        while True:
            offset = f.tell()
            head = f.read(9)
            if not head:
                return
            if len(head) < 9:
                if head == MAGIC[:len(head)]:
                    return  # the closing magic of a complete file
                raise McapDamage(offset, f"truncated record: {len(head)} of 9 header bytes")
            opcode, length = head[0], struct.unpack("<Q", head[1:])[0]
            if length > MAX_RECORD_BYTES:
                raise McapDamage(offset, f"corrupt record: record length {length} is implausible")
            body = f.read(length)
            if len(body) < length:
                damage = McapDamage(offset, f"truncated record 0x{opcode:02x}: {length} bytes declared, "
                                            f"{len(body)} present")
                yield opcode, offset, memoryview(body), damage
                raise damage
            yield opcode, offset, memoryview(body), None
            if opcode == OP_FOOTER:
                return

    def _chunk(self, offset: int, body: memoryview, cut: McapDamage | None) -> Iterator[tuple[str, str, int, bytes]]:
        """Messages of one chunk record (of a cut-off one too, when it is uncompressed)."""
        try:
            cur = _Cursor(body)
            cur.u64(), cur.u64()
            size, crc = cur.u64(), cur.u32()
            compression = cur.string()
            declared = cur.u64()
            if cut is not None:
                if compression != "":
                    raise ValueError(f"{compression} chunk cut off")
                raw = bytes(body[cur.pos:])
            else:
                raw = _decompress(bytes(cur.take(declared, "chunk records")), compression, size)
                if crc and zlib.crc32(raw) != crc:
                    raise ValueError("chunk CRC mismatch")
        except ValueError as exc:
            raise McapDamage(offset, f"corrupt chunk: {exc}") from None
        for sub_op, sub_body, sub_cut in self._chunk_records(memoryview(raw), offset):
            if sub_cut is None:
                yield from self._handle(sub_op, offset, sub_body)
        if cut is not None:
            raise cut

    def _handle(self, opcode: int, offset: int, body: memoryview) -> Iterator[tuple[str, str, int, bytes]]:
        try:
            cur = _Cursor(body)
            if opcode == OP_SCHEMA:
                schema_id = cur.u16()
                self.schemas[schema_id] = (cur.string(), cur.string(), bytes(cur.take(cur.u32(), "schema")).decode())
            elif opcode == OP_CHANNEL:
                channel_id, schema_id = cur.u16(), cur.u16()
                self.channels[channel_id] = (cur.string(), schema_id)
            elif opcode == OP_MESSAGE:
                channel_id, _, log_ns, _ = struct.unpack("<HIQQ", cur.take(22, "message header"))
                if channel_id not in self.channels:
                    raise ValueError(f"message on unknown channel {channel_id}")
                yield self.channels[channel_id][0], self.msgtype(channel_id), log_ns, bytes(body[22:])
        except (ValueError, UnicodeDecodeError) as exc:
            raise McapDamage(offset, f"corrupt record 0x{opcode:02x}: {exc}") from None

    def topics(self) -> dict[str, tuple[str, int]]:
        """topic -> (message type, count of intact messages)."""
        counts: dict[str, tuple[str, int]] = {}
        for topic, msgtype, _, _ in self.raw_messages():
            counts[topic] = (msgtype, counts.get(topic, ("", 0))[1] + 1)
        for topic, schema_id in self.channels.values():  # channels without intact messages
            counts.setdefault(topic, (self.schemas.get(schema_id, ("",))[0], 0))
        return counts

    def typestore(self) -> Any:
        """A typestore with the bag's own message definitions (after a scan), else Jazzy's."""
        from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

        types: dict = {}
        for name, encoding, text in self.schemas.values():
            try:
                if encoding == "ros2msg":
                    types.update(get_types_from_msg(text, name))
                elif encoding in ("ros2idl", "omgidl"):
                    types.update(get_types_from_idl(text))
            except Exception:  # an unparsable schema: fall back to the stock definition
                continue
        if types:
            store = get_typestore(Stores.EMPTY)
            try:
                store.register(types)
                return store
            except Exception:  # inconsistent definitions in the bag: use the stock ones
                pass
        return get_typestore(Stores.ROS2_JAZZY)
