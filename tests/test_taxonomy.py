"""The taxonomy module alone: parsing the TOML or YAML file, summing members' probabilities,
labelling below a threshold, and the errors that name the file."""
from __future__ import annotations

import pytest

from genreq.app import taxonomy
from genreq.app.taxonomy import UNKNOWN, Labeller, Taxonomy, TaxonomyError

TOML = '''
[genres]
hiphop = "Hip-Hop"
metal = "Rock"
rock = "Rock"
'''
YAML = """
genres:
  hiphop: Hip-Hop
  metal: Rock
  rock: "Rock"
"""
PROBS = {"jazz": 0.4, "metal": 0.3, "rock": 0.25, "hiphop": 0.05}


def test_parse_maps_several_model_genres_to_one():
    tax = taxonomy.parse(TOML)
    assert tax.mapping == {"hiphop": "Hip-Hop", "metal": "Rock", "rock": "Rock"}
    assert tax.user_genre("metal") == "Rock"
    assert tax.user_genre("jazz") == "jazz"  # unnamed genres keep their name
    assert tax.user_genres(["jazz", "metal", "rock", "hiphop"]) == ["Hip-Hop", "Rock", "jazz"]


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".YAML"])
def test_yaml_reads_as_the_same_mapping(suffix):
    assert taxonomy.parse(YAML, suffix=suffix).mapping == taxonomy.parse(TOML).mapping


def test_map_probs_sums_members_and_sorts():
    mapped = taxonomy.parse(TOML).map_probs(PROBS)
    assert list(mapped) == ["Rock", "jazz", "Hip-Hop"]
    assert mapped["Rock"] == pytest.approx(0.55)
    assert sum(mapped.values()) == pytest.approx(1.0)


def test_map_probs_breaks_ties_by_name():
    assert list(Taxonomy().map_probs({"b": 0.5, "a": 0.5})) == ["a", "b"]


def test_label_with_taxonomy_can_differ_from_the_model_top_genre():
    label = Labeller(taxonomy.parse(TOML), top_k=2).label(PROBS)
    assert (label.genre, round(label.confidence, 4)) == ("Rock", 0.55)
    assert [g for g, _p in label.top] == ["Rock", "jazz"]
    assert Labeller().label(PROBS).genre == "jazz"


def test_label_unknown_below_threshold_keeps_confidence_and_top():
    labeller = Labeller(unknown_below=0.5)
    low = labeller.label(PROBS)
    assert (low.genre, low.confidence, low.top[0]) == (UNKNOWN, 0.4, ("jazz", 0.4))
    assert labeller.label({"jazz": 0.5, "rock": 0.5}).genre == "jazz"  # at X is not below
    assert labeller.genres(["rock", "jazz"]) == ["jazz", "rock", UNKNOWN]
    assert not labeller.is_identity and Labeller().is_identity


def test_label_of_empty_probs_is_unknown():
    assert Labeller().label({}).genre == UNKNOWN


TOML_CASES = [
    ("[genres\n", "not valid TOML"),
    ("hiphop = 'Hip-Hop'\n", "no [genres] table"),
    ("[genres]\nrock = 3\n", "values must be non-empty strings: rock"),
    ("[genres]\nrock = ' '\n", "values must be non-empty strings: rock"),
    ("[genres]\nnoise = 'unknown'\n", "'unknown' is reserved"),
]
YAML_CASES = [
    ("genres:\n  hiphop: [Hip\n", ("not valid YAML (expected ',' or ']', but got '<stream end>'"
                                  " at line 3, column 1)")),
    ("genres:\n hiphop: a\n  x: b\n", ("not valid YAML (mapping values are not allowed here "
                                      "at line 3, column 4)")),
    ("", "no genres: table (e.g. genres: {hiphop: Hip-Hop})"),
    ("- hiphop\n- rock\n", "no genres: table"),
    ("genres: Rock\n", "no genres: table"),
    ("genres:\n  rock: 3\n", "genres: values must be non-empty strings: rock"),
    ("genres:\n  rock:\n", "genres: values must be non-empty strings: rock"),
    # unquoted `no` is YAML 1.1's false: name the key rather than map a genre called False
    ("genres:\n  no: Rock\n", "genres: keys must be model genre names (quote them): False"),
    ("genres:\n  noise: unknown\n", "'unknown' is reserved"),
    # safe_load only: a tag that would construct a Python object is an error, not a call
    ("genres: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
]


@pytest.mark.parametrize("name, text, reason", [
    *(("genres.toml", text, reason) for text, reason in TOML_CASES),
    *(("genres.yml", text, reason) for text, reason in YAML_CASES),
])
def test_bad_files_name_the_file_and_reason(tmp_path, name, text, reason):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TaxonomyError) as info:
        taxonomy.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert reason in str(info.value)


@pytest.mark.parametrize("name", ["genres.json", "genres"])
def test_unknown_suffix_names_the_file_and_the_formats(tmp_path, name):
    path = tmp_path / name
    path.write_text("[genres]\nrock = 'Rock'\n")
    with pytest.raises(TaxonomyError) as info:
        taxonomy.load(path)
    assert str(info.value) == (f"{path}: unknown taxonomy format "
                               f"{path.suffix or '(no suffix)'!r}; name the file .toml, "
                               ".yaml or .yml")


def test_missing_file(tmp_path):
    with pytest.raises(TaxonomyError, match="missing.toml: cannot read taxonomy"):
        taxonomy.load(tmp_path / "missing.toml")


def test_resolve_option_then_env_then_identity(tmp_path, monkeypatch):
    env_file = tmp_path / "env.toml"
    env_file.write_text("[genres]\nrock = 'Env Rock'\n")
    opt_file = tmp_path / "opt.toml"
    opt_file.write_text("[genres]\nrock = 'Option Rock'\n")
    monkeypatch.delenv("GENREQ_TAXONOMY", raising=False)
    assert taxonomy.resolve(None) is taxonomy.IDENTITY
    monkeypatch.setenv("GENREQ_TAXONOMY", str(env_file))
    assert taxonomy.resolve(None).user_genre("rock") == "Env Rock"
    assert taxonomy.resolve(opt_file).user_genre("rock") == "Option Rock"
