"""tf.train.Example encoding and TFRecord framing, without importing TensorFlow.

TensorFlow costs a worker process about 600 MB and 3 s just to import, and the converter needs
only two wire formats from it, both small and stable:

- ``tf.train.Example`` (tensorflow/core/example/{example,feature}.proto), written here as protobuf
  bytes with the features in sorted order, so the same input always gives the same bytes;
- the TFRecord framing: length (uint64 LE), masked CRC32C of the length, data, masked CRC32C of
  the data.

The tests read every record back with ``tf.data`` and ``tf.train.Example`` to prove both.
"""
import struct

import google_crc32c

_LEN = 2  # protobuf wire type: length-delimited


def _varint(value):
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# An encoded message is kept as a list of byte chunks, so that a large image is referenced, never
# copied, on its way into the file (each copy of a 1.5 MB image costs about as much as its hash).

def _field(number, chunks):
    size = sum(len(c) for c in chunks)
    return [_varint((number << 3) | _LEN) + _varint(size)] + chunks


def bytes_feature(values):
    """A ``tf.train.Feature`` with a bytes_list (str items are UTF-8 encoded)."""
    items = []
    for value in values:
        items += _field(1, [value.encode("utf-8") if isinstance(value, str) else value])
    return _field(1, items)


def float_feature(values):
    """A ``tf.train.Feature`` with a float_list (float32, packed)."""
    packed = struct.pack("<%df" % len(values), *values)
    return _field(2, _field(1, [packed]) if values else [])


def int64_feature(values):
    """A ``tf.train.Feature`` with an int64_list (packed)."""
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, [packed]) if values else [])


def encode_example(features):
    """A ``tf.train.Example`` of ``{name: feature}``, names in sorted order, as a list of chunks.

    Build each feature with ``bytes_feature``, ``float_feature`` or ``int64_feature``;
    ``b"".join`` the result for the serialized message.
    """
    entries = []
    for name in sorted(features):
        entries += _field(1, _field(1, [name.encode("utf-8")]) + _field(2, features[name]))
    return _field(1, entries)


def _masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(chunks):
    """One TFRecord entry holding the message ``chunks``, as a list of chunks to write in order."""
    length = struct.pack("<Q", sum(len(c) for c in chunks))
    crc = 0
    for chunk in chunks:
        crc = google_crc32c.extend(crc, chunk)
    return ([length + struct.pack("<I", _masked(google_crc32c.value(length)))] + chunks
            + [struct.pack("<I", _masked(crc))])
