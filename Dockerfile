# pddattn on Debian bookworm: the same set-up as `make setup`, then the main job.
#
#   docker build -t pddattn .
#   docker run --rm pddattn                          # make demo: the DD vs global comparison
#   docker run --rm pddattn make test                # the whole test suite, serial and mpirun
#   docker run --rm -v $PWD/runs:/opt/pddattn/runs pddattn   # keep results.json and curves.png
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMPI_ALLOW_RUN_AS_ROOT=1 \
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends make python3 python3-venv python3-pip \
        python3-petsc4py python3-mpi4py openmpi-bin ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/pddattn
COPY . .
# The Makefile's own bootstrap: the Debian packages are already there, so it only
# builds the venv (system site packages, numpy < 2) and pip-installs the rest;
# tools/install-torch.sh picks the CPU build of torch when the build machine has no GPU.
RUN make setup

CMD ["make", "demo"]
