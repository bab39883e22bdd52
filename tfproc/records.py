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


# -- reading (for inspect) ----------------------------------------------------------------------

def read_records(f):
    """Yield the records of an open TFRecord file; raises ValueError on a bad length or CRC."""
    while True:
        header = f.read(12)
        if not header:
            return
        if len(header) < 12:
            raise ValueError("truncated record header")
        length, length_crc = struct.unpack("<QI", header)
        if _masked(google_crc32c.value(header[:8])) != length_crc:
            raise ValueError("corrupt record length (CRC mismatch)")
        data = f.read(length)
        footer = f.read(4)
        if len(data) < length or len(footer) < 4:
            raise ValueError("truncated record")
        if _masked(google_crc32c.value(data)) != struct.unpack("<I", footer)[0]:
            raise ValueError("corrupt record data (CRC mismatch)")
        yield data


def _read_varint(buf, i):
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _fields(buf):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = _read_varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)
        yield number, wire, value


def decode_example(data):
    """A serialized ``tf.train.Example`` as ``{name: [values]}`` (bytes, floats or ints)."""
    features = {}
    for number, _, payload in _fields(data):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(payload):
            if entry_number != 1:
                continue
            name, values = None, []
            for field_number, _, value in _fields(entry):
                if field_number == 1:
                    name = bytes(value).decode("utf-8")
                elif field_number == 2:
                    values = _decode_feature(value)
            features[name] = values
    return features


def _decode_feature(feature):
    values = []
    for kind, _, payload in _fields(feature):
        for _, wire, value in _fields(payload):
            if kind == 1:
                values.append(bytes(value))
            elif kind == 2:
                values.extend(struct.unpack("<%df" % (len(value) // 4), value) if wire == 2
                              else struct.unpack("<f", value))
            elif kind == 3:
                if wire == 2:
                    i = 0
                    while i < len(value):
                        number, i = _read_varint(value, i)
                        values.append(number - (1 << 64) if number >> 63 else number)
                else:
                    values.append(value - (1 << 64) if value >> 63 else value)
    return values
