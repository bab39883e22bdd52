"""Pixel boxes to the normalized, clipped boxes the training side reads."""


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
