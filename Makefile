# Set-up and entry points. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test test-kernels run clean demo-model

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The import contracts (pyproject.toml), then the tests: one worker per core (at most 4; the
# trained session fixtures are built once for all), the 15 slowest tests printed in every run.
test: $(STAMP)
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n auto --maxprocesses=4 --dist loadscope --durations=15

# The tests whose figures depend on floating-point kernels (marker float_paths), under other CPUs'
# kernel sets: oneDNN and ATen choose kernels by CPU, and these caps reproduce an AVX2-only or an
# SSE4.1 machine's rounding on any x86-64 one. Each set's JUnit report (with the trained tests'
# figures) lands in $(KERNEL_REPORTS); `python tests/figure_table.py $(KERNEL_REPORTS)/*.xml` tabulates them.
KERNEL_SETS ?= ONEDNN_MAX_CPU_ISA=SSE41,ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2
KERNEL_REPORTS ?= .kernel-reports
test-kernels: $(STAMP)
	mkdir -p $(KERNEL_REPORTS)
	set -e; for kernels in $(KERNEL_SETS); do \
		echo "== $$kernels"; \
		env $$(echo $$kernels | tr , ' ') QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -n auto --maxprocesses=4 \
			--dist loadscope -m float_paths --junitxml=$(KERNEL_REPORTS)/$$(echo $$kernels | tr ,= -_).xml; \
	done

run: $(STAMP)
	$(VENV)/bin/fkp-studio

clean:
	rm -rf $(VENV) build *.egg-info

# The demo model in resources/models/demo/ (issue 5): synthetic data, both stages of the
# `lite` preset trained on the CPU, then scored on a fresh test set (a seed it never saw).
DEMO_DATA ?= /tmp/fkp-demo
demo-model: $(STAMP)
	$(VENV)/bin/fkp synth $(DEMO_DATA)/train --overwrite --n 12000 --seed 1 --split train --size 256
	$(VENV)/bin/fkp synth $(DEMO_DATA)/train --overwrite --n 600 --seed 2 --split val --size 256
	$(VENV)/bin/fkp train --data $(DEMO_DATA)/train --preset lite --epochs 10 \
		--detector-size 256 --detector-steps 3600 --detector-batch 4 --detector-lr 1e-3 \
		--threads 1 --half --flip-tta --rotation-search --box-search --work $(DEMO_DATA)/work --out resources/models/demo
	$(VENV)/bin/fkp train-visibility --model resources/models/demo --data $(DEMO_DATA)/train --limit 4000 \
		--threads 2 --half --out resources/models/demo
	$(VENV)/bin/fkp synth $(DEMO_DATA)/test --overwrite --n 300 --seed 20261125 --split test --size 256
	$(VENV)/bin/fkp predict --model resources/models/demo --data $(DEMO_DATA)/test --out $(DEMO_DATA)/pred.csv
	$(VENV)/bin/fkp eval $(DEMO_DATA)/test/Annotations/test.csv $(DEMO_DATA)/pred.csv
