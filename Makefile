# From a fresh clone: `make demo` runs the demo end to end, `make test` runs what CI runs.
# Both create the virtual environment (.venv) when it is missing.

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GX_ANALYTICS_ENABLED := False

.PHONY: demo test install

demo: .venv/.installed
	.venv/bin/dataselect demo --out demo-build

test:
	bash .ci/run

install: .venv/.installed

.venv/.installed: pyproject.toml
	bash .ci/install
	touch $@
