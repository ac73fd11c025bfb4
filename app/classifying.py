"""Classify files directly in this process: no queue, no database (`genreq classify`
without the pipeline)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genreq.predict import Prediction


@dataclass(frozen=True)
class Classified:
    path: str
    model: str  # the name of the model that classified it
    prediction: Prediction | None  # None when the file could not be classified
    error: str | None = None  # then: the path and the reason


def classify(paths: Iterable[str | Path], model: str | None = None) -> Iterator[Classified]:
    """Classify each audio file in `paths` with `model` (a checkpoint path or a shipped
    model's name; None: $GENREQ_MODEL or the default), loaded once. A file that cannot
    be decoded is yielded with its error; a model that cannot be loaded raises
    ModelError before the first file."""
    from genreq.errors import AudioError
    from genreq.predict import Classifier

    classifier = Classifier.load(model)
    for path in paths:
        try:
            yield Classified(str(path), classifier.name, classifier.classify_file(path))
        except AudioError as exc:
            yield Classified(str(path), classifier.name, None, str(exc))
