"""Vertex AI's entry point (``pythonModule: trainer.task``): the same commands as ``python -m trainer``."""
from trainer.cli import main

if __name__ == "__main__":
    main()
