# pddattn: `make demo` runs the main job, `make test` runs every test.
# Both bootstrap the environment (Debian packages, a venv over Debian's
# python3 with --system-site-packages, pip installs) and skip what is done.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PY_SYS   := /usr/bin/python3
VENV     := .venv
PY       := $(VENV)/bin/python
SUDO     := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PKGS := python3-venv python3-petsc4py python3-mpi4py openmpi-bin
# Debian's petsc4py lives under PETSC_DIR; without the `petsc` alternatives
# link it is not on sys.path, so the venv gets a .pth file pointing at it.
PETSC_DIR_DEBIAN := /usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real
MPIRUN   := mpirun --oversubscribe
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
MPI_TIMEOUT := 900
OUT ?= runs

.PHONY: setup demo test test-serial test-mpi bench bench-speed bench-scaling bench-reproduce bench-petsc \
        bench-2d bench-kappa bench-stability bench-petsc2d bench-multilevel bench-setup bench-solve bench-pc-cost \
        bench-precision bench-hierarchy bench-family bench-darcy clean

setup: $(VENV)/.installed

$(VENV)/.apt:
	@if ! dpkg -s $(APT_PKGS) >/dev/null 2>&1; then \
	  echo "installing Debian packages: $(APT_PKGS)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	fi
	@mkdir -p $(VENV) && touch $@

$(VENV)/.installed: $(VENV)/.apt pyproject.toml constraints.txt tools/install-torch.sh
	@[ -x $(PY) ] || $(PY_SYS) -m venv --system-site-packages $(VENV)
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  if [ -d $(PETSC_DIR_DEBIAN) ] && [ ! -e /usr/lib/petsc ]; then \
	    echo "$(PETSC_DIR_DEBIAN)/lib/python3/dist-packages" > $$site/pddattn-debian-petsc4py.pth; fi
	bash tools/install-torch.sh $(PY)
	$(PY) -m pip install -q -e '.[test,plot,fno,data,gt]'
	@$(PY) -c 'import numpy, torch, mpi4py, petsc4py, pytest, neuralop; print("environment ready: numpy", numpy.__version__, "torch", torch.__version__, "petsc4py", petsc4py.__version__)'
	@touch $@

demo: setup
	$(VENV)/bin/pddattn compare --out $(OUT)/compare

test: test-serial test-mpi

test-serial: setup
	$(PY) -m pytest -q tests

# The same suite's MPI tests under 1, 2, 3 and 4 ranks (3 and 4 oversubscribe 2 cores).
# `timeout` turns a hang into a failure; exit 5 (nothing selected) is not one.
test-mpi: setup
	@for n in 1 2 3 4; do \
	  echo "== mpirun -n $$n: MPI tests =="; \
	  timeout $(MPI_TIMEOUT) $(MPIRUN) -n $$n $(PY) -m pytest -q --with-mpi -m mpi -p no:cacheprovider tests \
	    || { rc=$$?; [ $$rc -eq 5 ] || exit $$rc; }; \
	done

bench: bench-speed bench-reproduce bench-scaling bench-petsc bench-2d bench-kappa bench-stability \
       bench-petsc2d bench-multilevel bench-setup bench-solve bench-pc-cost bench-precision bench-hierarchy \
       bench-family bench-darcy

bench-speed: setup
	$(PY) benchmarks/step_time.py --out benchmarks/results

bench-reproduce: setup
	$(PY) benchmarks/reproduce.py --out benchmarks/results

bench-scaling: setup
	$(PY) benchmarks/scaling.py --out benchmarks/results

bench-petsc: setup
	$(PY) benchmarks/iterations.py --out benchmarks/results

bench-2d: setup
	$(PY) benchmarks/reproduce2d.py --out benchmarks/results

bench-kappa: setup
	$(PY) benchmarks/kappa2d.py --out benchmarks/results

bench-stability: setup
	$(PY) benchmarks/stability.py --out benchmarks/results

bench-petsc2d: setup
	$(PY) benchmarks/iterations2d.py --grids 127,255,511 --train-ranks 1 --out benchmarks/results

bench-multilevel: setup
	$(PY) benchmarks/multilevel.py --out benchmarks/results

bench-setup: setup
	$(PY) benchmarks/setup_cost.py --out benchmarks/results
	$(PY) benchmarks/setup_projection.py --out benchmarks/results

bench-hierarchy: setup
	$(PY) benchmarks/hierarchy_update.py --out benchmarks/results
	$(PY) benchmarks/pc_refactor.py --out benchmarks/results

bench-family: setup
	$(PY) benchmarks/family.py --operators 64 --out benchmarks/results
	$(PY) benchmarks/family.py --data ones --operators 16,64,256,1000 --unroll 1 --free --out benchmarks/results
	$(VENV)/bin/pddattn train --factors generated --operators 64 --steps 2000 --out $(OUT)/fam63 --overwrite
	$(PY) benchmarks/family_pc.py --model $(OUT)/fam63/checkpoint.pt --out benchmarks/results
	$(VENV)/bin/pddattn train --factors generated --local-factors ritz --loss condition --operators 64 \
		--steps 2000 --out $(OUT)/famritz --overwrite
	$(PY) benchmarks/family_pc.py --model $(OUT)/famritz/checkpoint.pt --name family_pc_ritz --out benchmarks/results

# The Darcy benchmark (about 18 hours on 2 cores, 32 with the ablations and shapes; each model's time is in
# docs/results.md): its data regenerated once (15-25 minutes), then every model's training, saved after each
# epoch: run it again after a stop and it resumes where it stopped; then the FNO and Galerkin Transformer
# recipes' ablations (about half an hour and 11 hours) and the baselines' other shapes at DD's parameter
# count (about 2.5 hours; all resume too).
bench-darcy: setup $(OUT)/darcy_85.h5
	$(PY) benchmarks/darcy.py --data $(OUT)/darcy_85.h5 --transfer $(OUT)/darcy_141.h5 --epochs 100 \
	  --out benchmarks/results/darcy_full
	$(PY) benchmarks/darcy_fno_ablation.py --data $(OUT)/darcy_85.h5 --epochs 10 --out benchmarks/results/darcy_full
	$(PY) benchmarks/darcy_gt_ablation.py --data $(OUT)/darcy_85.h5 --epochs 100 \
	  --variants batches-of-20,no-h1-term,step-schedule,scalar-normalisers --out benchmarks/results/darcy_full
	$(PY) benchmarks/darcy_shapes.py --data $(OUT)/darcy_85.h5 --epochs 100 --out benchmarks/results/darcy_full

$(OUT)/darcy_85.h5:
	$(VENV)/bin/pddattn data darcy --grid 85,141 --train 1000 --test 200 --out $(OUT)/darcy.h5

bench-pc-cost: setup
	$(PY) benchmarks/pc_cost.py --out benchmarks/results

bench-precision: setup
	$(PY) benchmarks/precision.py --out benchmarks/results

# pyamg is an optional benchmark dependency (the [bench] extra), installed here only.
bench-solve: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) benchmarks/solve_time.py --out benchmarks/results

clean:
	rm -rf $(VENV) runs .pytest_cache build *.egg-info
