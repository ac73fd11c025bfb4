# The two commands a new user runs (see README):
#   make run MUSIC=~/Music    set up, then classify every audio file under MUSIC
#   make test                 set up, then run the test suite
VENV ?= .venv
MUSIC ?=
WORKERS ?=
DEMO_LIBRARY := demo-library
STAMP := $(VENV)/.genreq-setup

.PHONY: setup run test test-fast lint clean-demo compose-test

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup
	VENV=$(VENV) scripts/setup
	touch $@

run: setup
ifeq ($(strip $(MUSIC)),)
	$(VENV)/bin/python scripts/demo-library $(DEMO_LIBRARY)
	$(VENV)/bin/genreq run $(DEMO_LIBRARY) $(if $(WORKERS),--workers $(WORKERS))
else
	$(VENV)/bin/genreq run "$(MUSIC)" $(if $(WORKERS),--workers $(WORKERS))
endif

test: setup
	$(VENV)/bin/pytest -q

# The inner loop: everything but the tests marked slow (many-epoch training, real
# worker processes, fault injection); `make test` and CI still run those.
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

clean-demo:
	rm -rf $(DEMO_LIBRARY)

# docker-compose.yml's stack built here from a debootstrap base and a local wheelhouse,
# then up with two workers on a few generated files (root; slow and CPU-heavy: not in CI,
# which checks `docker-compose config -q` only). See docs/development.md.
compose-test: setup
	PYTHON=$(VENV)/bin/python scripts/compose-test
