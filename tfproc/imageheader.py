"""Image format and size from the file header, without decoding the pixels."""
import io
import struct
import warnings

from PIL import Image, UnidentifiedImageError

FORMATS = {"PNG": "png", "JPEG": "jpeg"}

EXIF_ORIENTATION = 0x0112
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"     # the IEND chunk every whole PNG ends with
_JPEG_START_OF_SCAN, _JPEG_END = 0xDA, b"\xff\xd9"


class BadImage(ValueError):
    """Image bytes that cannot be used; ``reason`` names the kind of fault for the summary."""

    def __init__(self, reason, detail):
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail


def read_header(data):
    """Return ``(format, width, height, orientation)`` of PNG or JPEG bytes.

    ``format`` is 'png' or 'jpeg'; width and height are those of the stored pixel grid (what
    TensorFlow decodes); ``orientation`` is the EXIF orientation (1 when there is none). Raises
    BadImage (a ValueError) for anything else, for a header that claims more pixels than can be decoded, and for
    a file cut short (it lacks its end marker). ``Image.open`` parses only the header.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, (width, height) = image.format, image.size
                orientation = image.getexif().get(EXIF_ORIENTATION, 1) if kind == "JPEG" else 1
    except Image.DecompressionBombError as error:
        raise BadImage("image too large", str(error))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error,
            IndexError, TypeError) as error:
        raise BadImage("not a PNG/JPEG image", str(error))
    if kind not in FORMATS:
        raise BadImage("not a PNG/JPEG image", "a %s image" % kind)
    if not is_whole(FORMATS[kind], data):
        raise BadImage("truncated image", "the %s file ends before its end marker (%d bytes)"
                       % (FORMATS[kind].upper(), len(data)))
    if not isinstance(orientation, int) or orientation not in range(1, 9):
        orientation = 1
    return FORMATS[kind], width, height, orientation


def is_whole(image_format, data):
    """Whether PNG/JPEG ``data`` reaches its end marker (a file cut short does not decode)."""
    if image_format == "png":
        return data.rfind(_PNG_END) != -1
    scan = _jpeg_first_scan(data)
    return scan is not None and data.find(_JPEG_END, scan) != -1


def _jpeg_first_scan(data):
    """Offset of the first start-of-scan segment, walking the marker segments before it."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker == _JPEG_START_OF_SCAN:
            return i
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:   # markers without a length
            i += 2
            continue
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None
