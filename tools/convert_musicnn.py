"""Convert the musicnn wheel's checkpoints to PyTorch: the script form of
`genreq models convert-musicnn`.

    .venv/bin/python tools/convert_musicnn.py --out converted --model MSD_musicnn
"""
from genreq.cli.models import convert_musicnn

if __name__ == "__main__":
    convert_musicnn()
