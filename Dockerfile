# syntax=docker/dockerfile:1
# One image for every Caracal process; compose.yaml picks the process with `command`
# (caracal api | dispatcher | reaper | migrate).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY . .
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/caracal caracal

# The installed package carries everything it needs (migrations included); run from the home
# directory so nothing in /src can shadow it.
WORKDIR /home/caracal
USER 10001:10001

EXPOSE 3000
# No ENTRYPOINT: `caracal api` execs the service, so it runs as PID 1 and receives SIGTERM directly.
CMD ["caracal", "api"]
