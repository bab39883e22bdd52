"""Image format and size from the file header, without decoding the pixels."""
import io

from PIL import Image, UnidentifiedImageError

FORMATS = {"PNG": "png", "JPEG": "jpeg"}


def read_header(data):
    """Return ``(format, width, height)`` of PNG or JPEG bytes; ``format`` is 'png' or 'jpeg'.

    Raises ValueError for anything else. ``Image.open`` parses only the header.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError("not a PNG/JPEG image (%s)" % error)
    if kind not in FORMATS:
        raise ValueError("not a PNG/JPEG image (%s)" % kind)
    return FORMATS[kind], width, height
