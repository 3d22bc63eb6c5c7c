# The aggregator image: only the server's distribution (aggregator + contract), none of the
# edge's dependencies. Build from the repository root: docker build -f deployment/aggregator.Dockerfile .
FROM python:3.11-slim
COPY contract /src/contract
COPY aggregator /src/aggregator
RUN pip install --no-cache-dir /src/aggregator && useradd --system va-aggregator
USER va-aggregator
ENTRYPOINT ["video-analysis-aggregator"]
CMD ["run", "-c", "/etc/video-analysis/aggregator.yaml"]
