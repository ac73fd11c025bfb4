"""`python -m genreq.cli` is `genreq`: how `genreq run` starts its workers with the
same interpreter, whatever is on PATH."""
from genreq.cli.main import cli

cli(prog_name="genreq")
