# The phonesync job image: slim, non-root, dependencies pinned by constraints.txt.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY common ./common
COPY jobs ./jobs
COPY functions ./functions
COPY sim ./sim
RUN pip install --no-cache-dir --prefix=/install --constraint constraints.txt .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /install /usr/local
RUN useradd --system --uid 10001 --no-create-home phonesync
USER phonesync
WORKDIR /tmp
CMD ["phonesync", "run"]
