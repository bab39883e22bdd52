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


def _field(number, payload):
    return _varint((number << 3) | _LEN) + _varint(len(payload)) + payload


def bytes_feature(values):
    """A ``tf.train.Feature`` with a bytes_list (str items are UTF-8 encoded)."""
    items = b"".join(_field(1, v.encode("utf-8") if isinstance(v, str) else v) for v in values)
    return _field(1, items)


def float_feature(values):
    """A ``tf.train.Feature`` with a float_list (float32, packed)."""
    packed = struct.pack("<%df" % len(values), *values)
    return _field(2, _field(1, packed) if values else b"")


def int64_feature(values):
    """A ``tf.train.Feature`` with an int64_list (packed)."""
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if values else b"")


def encode_example(features):
    """Serialize ``{name: encoded feature}`` as a ``tf.train.Example``, names in sorted order.

    Build each feature with ``bytes_feature``, ``float_feature`` or ``int64_feature``.
    """
    entries = b"".join(
        _field(1, _field(1, name.encode("utf-8")) + _field(2, features[name]))
        for name in sorted(features)
    )
    return _field(1, entries)


def _masked_crc32c(data):
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame_record(data):
    """Return ``data`` framed as one TFRecord entry."""
    length = struct.pack("<Q", len(data))
    return b"".join((
        length,
        struct.pack("<I", _masked_crc32c(length)),
        data,
        struct.pack("<I", _masked_crc32c(data)),
    ))
