# The heavy templates (build.sh's HEAVY_TEMPLATES, each with its installed node_modules) as an image
# of files only, which docker/preview-base/Dockerfile copies from. Build context: .build/heavy.
FROM scratch
COPY . /
