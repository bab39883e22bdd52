"""Pixel boxes to the normalized, clipped boxes the training side reads."""
import dataclasses


def normalize(boxes, width, height):
    """Clip pixel boxes to the image and scale them to [0, 1].

    Returns ``(kept, clipped, dropped)``: ``kept`` a list of
    ``(box, xmin, ymin, xmax, ymax)``; ``clipped`` how many kept boxes had to be cut at the image
    edge; ``dropped`` how many boxes had no area left inside the image.
    """
    kept, clipped, dropped = [], 0, 0
    for box in boxes:
        x0, y0 = max(box.x, 0.0), max(box.y, 0.0)
        x1, y1 = min(box.x + box.width, float(width)), min(box.y + box.height, float(height))
        if x1 <= x0 or y1 <= y0:
            dropped += 1
            continue
        if (x0, y0, x1, y1) != (box.x, box.y, box.x + box.width, box.y + box.height):
            clipped += 1
        kept.append((box, x0 / width, y0 / height, x1 / width, y1 / height))
    return kept, clipped, dropped


# EXIF orientation -> where a point (x, y) of the upright photo lies in the stored grid (w x h).
_TO_STORED = {
    2: lambda x, y, w, h: (w - x, y),
    3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y),
    5: lambda x, y, w, h: (y, x),
    6: lambda x, y, w, h: (y, h - x),
    7: lambda x, y, w, h: (w - y, h - x),
    8: lambda x, y, w, h: (w - y, x),
}


def to_stored_grid(boxes, orientation, width, height):
    """Boxes drawn on the upright photo (as viewers and annotation tools show it) moved onto the
    stored pixel grid of ``width`` x ``height``, which is what TensorFlow decodes (it ignores EXIF)."""
    to_stored = _TO_STORED.get(orientation)
    if to_stored is None:
        return tuple(boxes)
    moved = []
    for box in boxes:
        (xa, ya), (xb, yb) = (to_stored(box.x, box.y, width, height),
                              to_stored(box.x + box.width, box.y + box.height, width, height))
        moved.append(dataclasses.replace(box, x=min(xa, xb), y=min(ya, yb),
                                         width=abs(xb - xa), height=abs(yb - ya)))
    return tuple(moved)
