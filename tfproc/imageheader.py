"""Image format and size from the file header, without decoding the pixels."""
import io

from PIL import Image, UnidentifiedImageError

FORMATS = {"PNG": "png", "JPEG": "jpeg"}


EXIF_ORIENTATION = 0x0112


def read_header(data):
    """Return ``(format, width, height, orientation)`` of PNG or JPEG bytes.

    ``format`` is 'png' or 'jpeg'; width and height are those of the stored pixel grid (what
    TensorFlow decodes); ``orientation`` is the EXIF orientation (1 when there is none). Raises
    ValueError for anything else. ``Image.open`` parses only the header.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
            orientation = image.getexif().get(EXIF_ORIENTATION, 1) if kind == "JPEG" else 1
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError("not a PNG/JPEG image (%s)" % error)
    if kind not in FORMATS:
        raise ValueError("not a PNG/JPEG image (%s)" % kind)
    return FORMATS[kind], width, height, orientation if orientation in range(1, 9) else 1
