#!/usr/bin/env bash
# Build the demo corpus: metadata from the seed, audio (flite / festival / espeak-ng + sox), pocketsphinx
# hypotheses and resemblyzer embeddings; resumable (rerun to continue). Extra arguments override
# config.toml, e.g. --speakers 40 --output-dir /tmp/demo --audio-dir /tmp/demo_audio.
# Audio only, for the shipped manifest:  recipes/demo_corpus/run.sh --ensure-audio
set -euo pipefail
cd "$(dirname "$0")/../.."
. recipes/path.sh
exec python -m fairspeech.demo --config recipes/demo_corpus/config.toml "$@"
