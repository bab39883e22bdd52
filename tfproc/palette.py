"""One colour per class on every picture the project draws: the conversion's previews, the
predictions' contact sheets and the precision-recall curves."""

COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40), (128, 0, 0)]


def class_colour(label):
    """The colour of class id ``label``."""
    return COLOURS[int(label) % len(COLOURS)]
