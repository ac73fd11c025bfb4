"""Read TensorFlow tensor-bundle checkpoints (`PREFIX.index` + `PREFIX.data-*`) with numpy.

The `.index` file is a LevelDB-style sorted table: data blocks of prefix-compressed
(key, value) entries, an index block pointing at them, and a 48-byte footer. Each key is
a variable name; its value is a serialized `BundleEntryProto` saying where the tensor's
raw little-endian bytes lie in the data shard. The empty key holds the bundle header and
is skipped. Only what TF1 `Saver` writes is supported: uncompressed blocks, numeric
dtypes, unsliced tensors. TensorFlow is not needed.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB table magic number, last 8 bytes of the file
FOOTER_BYTES = 48  # two padded block handles + magic
BLOCK_TRAILER_BYTES = 5  # compression type byte + crc32c after every block
NO_COMPRESSION = 0

# tensorflow/core/framework/types.proto DataType -> numpy dtype (little-endian on disk)
DTYPES = {1: "<f4", 2: "<f8", 3: "<i4", 4: "u1", 5: "<i2", 6: "i1", 9: "<i8", 10: "?", 19: "<f2"}


class CheckpointError(ValueError):
    """The files are not a tensor bundle this reader understands."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _proto_fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message; value is int or bytes."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _block(table: bytes, handle: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of the block a BlockHandle (offset, size varints) points at."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if table[offset + size] != NO_COMPRESSION:
        raise CheckpointError("compressed table blocks are not supported")
    block = table[offset:offset + size]
    n_restarts = struct.unpack_from("<I", block, size - 4)[0]
    end = size - 4 - 4 * n_restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def _entry(value: bytes) -> tuple[int, tuple[int, ...], int, int, int]:
    """(dtype, shape, shard_id, offset, size) of a BundleEntryProto."""
    dtype, shape, shard, offset, size = 0, (), 0, 0, 0
    for field, _, v in _proto_fields(value):
        if field == 1:
            dtype = v
        elif field == 2:  # TensorShapeProto: repeated Dim dim = 2 { int64 size = 1 }
            shape = tuple(
                next((s for f, _, s in _proto_fields(dim) if f == 1), 0)
                for f, _, dim in _proto_fields(v) if f == 2
            )
        elif field == 3:
            shard = v
        elif field == 4:
            offset = v
        elif field == 5:
            size = v
        elif field == 7:
            raise CheckpointError("sliced (partitioned) variables are not supported")
    return dtype, shape, shard, offset, size


def read_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every numeric tensor of the bundle at PREFIX (the path without `.index`), by name.

    Example: `read_checkpoint("musicnn/MSD_musicnn/")` reads `musicnn/MSD_musicnn/.index`.
    """
    prefix = str(prefix)
    index_path = Path(prefix + ".index")
    try:
        table = index_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{index_path}: {exc.strerror or exc}") from exc
    too_short = len(table) < FOOTER_BYTES
    if too_short or struct.unpack_from("<Q", table, len(table) - 8)[0] != TABLE_MAGIC:
        raise CheckpointError(f"{index_path}: not a TensorFlow checkpoint index")
    footer = table[-FOOTER_BYTES:]
    _, pos = _varint(footer, 0)  # metaindex handle: offset,
    _, pos = _varint(footer, pos)  # size (unused)
    index_handle = footer[pos:]
    entries = [e for _, handle in _block(table, index_handle) for e in _block(table, handle)]

    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for key, value in entries:
        if key == b"":  # BundleHeaderProto: num_shards, endianness, version
            continue
        name = key.decode()
        dtype, shape, shard, offset, size = _entry(value)
        if dtype not in DTYPES:
            continue  # strings and other non-numeric entries carry no weights
        if shard not in shards:
            header = _proto_fields(dict(entries).get(b"", b""))
            n_shards = next((v for f, _, v in header if f == 1), 1)
            data_path = Path(f"{prefix}.data-{shard:05d}-of-{n_shards:05d}")
            try:
                shards[shard] = data_path.read_bytes()
            except OSError as exc:
                raise CheckpointError(f"{data_path}: {exc.strerror or exc}") from exc
        raw = shards[shard][offset:offset + size]
        count = int(np.prod(shape, dtype=np.int64))
        if len(raw) != count * np.dtype(DTYPES[dtype]).itemsize:
            raise CheckpointError(f"{name}: {len(raw)} bytes for shape {shape} of dtype {dtype}")
        # a native-order, writable copy: the shard buffer is freed after reading
        native = np.dtype(DTYPES[dtype]).newbyteorder("=")
        tensors[name] = np.frombuffer(raw, dtype=DTYPES[dtype]).reshape(shape).astype(native)
    return tensors
