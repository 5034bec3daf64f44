# The regsweep image: workers and the dashboard of docker-compose.yml run from it.
#
#   docker compose build                 # CPU PyTorch (default, several GB smaller)
#   TORCH_INDEX=https://download.pytorch.org/whl/cu124 docker compose build
#                                        # CUDA PyTorch; see the README for the GPU setting
# docker-compose.yml passes TORCH_INDEX from .env or the environment (see .env.example).
FROM python:3.11-slim

# Where pip finds torch and torchvision: the CPU-only wheels unless told otherwise. Empty
# means pip's default index (PyPI: its Linux torch is the CUDA build).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# PyTorch first, in its own layer: it is the big download and changes least often.
RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} torch torchvision

COPY pyproject.toml README.md ./
COPY src ./src
# A non-editable install leaves setuptools' build/ behind: removed in the same layer, or
# the image would keep a second copy of the package.
RUN pip install . && rm -rf build src/*.egg-info

COPY sweeps ./sweeps

# Not root. /app/data is where sweeps/mnist.yaml caches MNIST (data.root: data); a named
# volume mounted there starts out owned by this user.
RUN useradd --create-home --uid 1000 regsweep \
    && mkdir -p /app/data \
    && chown regsweep /app/data
USER regsweep

CMD ["regsweep", "worker", "sweeps/mnist.yaml"]
