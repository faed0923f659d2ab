"""The embedded demo corpus: synthetic speakers with real cohort differences (recipe: recipes/demo_corpus/).

    from fairspeech.demo import build_metadata, ensure_audio, load_shipped_manifest
    manifest = load_shipped_manifest()                  # data_manifests/demo/manifest.parquet
    ensure_audio(manifest, "data/demo_audio", workers=2)  # re-render its wavs (not in git)

See data_manifests/demo/README.md for every file, column and rule.
"""

from fairspeech.demo.build import (
    DemoConfig,
    DemoMetadata,
    build_corpus,
    build_metadata,
    ensure_audio,
    load_shipped_manifest,
    metadata_columns,
)

__all__ = [
    "DemoConfig",
    "DemoMetadata",
    "build_corpus",
    "build_metadata",
    "ensure_audio",
    "load_shipped_manifest",
    "metadata_columns",
]
