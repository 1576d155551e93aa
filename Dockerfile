# One image for both services: `ghpulse scheduler` and `ghpulse crawler` (see compose.yaml).
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ghpulse ./ghpulse
COPY common ./common
COPY scheduler_service ./scheduler_service
COPY crawler_service ./crawler_service
RUN pip install --no-cache-dir .
ENV GHPULSE_LOG_FORMAT=json
EXPOSE 50051 50052 9464
ENTRYPOINT ["ghpulse"]
