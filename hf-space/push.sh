#!/usr/bin/env bash
# Lays out the Hugging Face Space (Dockerfile and README at the root, the gateway beside them) and pushes it.
# Usage: HF_TOKEN=hf_... hf-space/push.sh [--dry-run] OWNER/SPACE
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
space="${1:-}"
if ! printf '%s' "$space" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$'; then
  echo "usage: $0 [--dry-run] OWNER/SPACE" >&2
  exit 2
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

cp "$root/hf-space/Dockerfile" "$out/Dockerfile"
cp "$root/hf-space/README.md" "$out/README.md"
cp "$root/package.json" "$root/package-lock.json" "$root/tsconfig.json" "$root/tsconfig.build.json" "$out/"
cp -R "$root/src" "$root/bin" "$out/"

if [ "$dry_run" -eq 1 ]; then
  echo "would push to https://huggingface.co/spaces/$space:"
  (cd "$out" && find . -type f | sort)
  exit 0
fi

if [ -z "${HF_TOKEN:-}" ]; then
  echo "HF_TOKEN is not set: a token with write access is needed to push" >&2
  exit 2
fi
cd "$out"
git init -q -b main
git add -A
git -c user.name="vllm-gateway" -c user.email="vllm-gateway@users.noreply.huggingface.co" commit -q -m "Deploy vllm-gateway"
# The token goes in a header for this one command, never into a remote URL that git would store.
git -c "http.extraHeader=Authorization: Bearer $HF_TOKEN" push --force "https://huggingface.co/spaces/$space" main
echo "pushed: https://huggingface.co/spaces/$space"
