"""Tables and checksums: Parquet helpers, the clip-features table, sha256 helpers."""
