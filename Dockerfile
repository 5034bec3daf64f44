# The regsweep image: workers and the dashboard of docker-compose.yml run from it.
#
#   docker compose build                 # CPU PyTorch (default, about 1 GB smaller)
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
#                                        # CUDA PyTorch; see the README for the GPU setting
FROM python:3.11-slim

# Where pip finds torch and torchvision: the CPU-only wheels unless told otherwise.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# PyTorch first, in its own layer: it is the big download and changes least often.
RUN pip install --index-url "${TORCH_INDEX}" torch torchvision

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

COPY sweeps ./sweeps

# Not root. /app/data is where sweeps/mnist.yaml caches MNIST (data.root: data); a named
# volume mounted there starts out owned by this user.
RUN useradd --create-home --uid 1000 regsweep \
    && mkdir -p /app/data \
    && chown regsweep /app/data
USER regsweep

CMD ["regsweep", "worker", "sweeps/mnist.yaml"]
