"""The 50 Million Song Dataset tags the musicnn MSD taggers output, in output order.

Kept free of torch and numpy: the CLI checks `--tag` values against this vocabulary
without loading a model.
"""
from __future__ import annotations

MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)
# The same tags as genreq shows and stores them: lower case as written by people
# ("Hip-Hop" -> "hip-hop"), and "rnb" spelled as its genre is ("r&b"). Order is the
# tagger's output order. Both "female vocalist" and "female vocalists" stay: they are
# two outputs of the tagger, trained on two Last.fm tags.
_READABLE = {"rnb": "r&b"}
MSD_TAG_NAMES = tuple(_READABLE.get(tag, tag.lower()) for tag in MSD_TAGS)
